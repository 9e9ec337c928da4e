//! Witnessed audit checkpoints at the hub, on both stores: kept only when signed by the
//! station's own registered key, repeats accepted, another hash at a witnessed sequence number
//! refused and the first kept, served to the station itself and to the admin only.

mod support;

use axum::http::StatusCode;
use chrono::Utc;
use pht_api::{requests, Credentials};
use pht_core::checkpoint::Checkpoint;
use pht_core::dsse::Envelope;
use pht_core::{KeyAlgorithm, SigningKey};
use support::TestHub;

fn key_of(credentials: &Credentials) -> &SigningKey {
    match credentials {
        Credentials::Station { key, .. } => key,
        _ => unreachable!("a station's credentials"),
    }
}

async fn witnessed_checkpoints_are_append_only_and_the_stations_own(hub: TestHub) {
    let umc_a = hub.add_station("umc-a", KeyAlgorithm::Ed25519).await;
    let umc_b = hub.add_station("umc-b", KeyAlgorithm::Ed25519).await;
    let first = Checkpoint::new("umc-a", 7, &"a".repeat(64), Utc::now()).sign(key_of(&umc_a));
    hub.call(&requests::submit_checkpoint("umc-a", &first), &umc_a)
        .await
        .expect_status(StatusCode::CREATED);
    hub.call(&requests::submit_checkpoint("umc-a", &first), &umc_a)
        .await
        .expect_status(StatusCode::OK);
    // Another hash for entry 7: the log was rewritten; refused, and the first stays.
    let rewritten = Checkpoint::new("umc-a", 7, &"b".repeat(64), Utc::now()).sign(key_of(&umc_a));
    let refused = hub
        .call(&requests::submit_checkpoint("umc-a", &rewritten), &umc_a)
        .await
        .expect_status(StatusCode::CONFLICT);
    assert!(
        refused.error().message.contains("rewritten"),
        "{:?}",
        refused.error()
    );
    // Signed by another station's key, or sent for another station: refused.
    let forged = Checkpoint::new("umc-a", 8, &"c".repeat(64), Utc::now()).sign(key_of(&umc_b));
    hub.call(&requests::submit_checkpoint("umc-a", &forged), &umc_a)
        .await
        .expect_status(StatusCode::UNPROCESSABLE_ENTITY);
    hub.call(&requests::submit_checkpoint("umc-a", &first), &umc_b)
        .await
        .expect_status(StatusCode::FORBIDDEN);
    let later = Checkpoint::new("umc-a", 9, &"d".repeat(64), Utc::now()).sign(key_of(&umc_a));
    hub.call(&requests::submit_checkpoint("umc-a", &later), &umc_a)
        .await
        .expect_status(StatusCode::CREATED);

    let own: Vec<Envelope> = hub
        .call(&requests::station_checkpoints("umc-a"), &umc_a)
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(own, [first.clone(), later.clone()]);
    let admin: Vec<Envelope> = hub
        .call(&requests::admin_checkpoints("umc-a"), &support::admin())
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(admin, own);
    hub.call(&requests::station_checkpoints("umc-a"), &umc_b)
        .await
        .expect_status(StatusCode::FORBIDDEN);
}

crate::on_both_stores!(witnessed_checkpoints_are_append_only_and_the_stations_own);
