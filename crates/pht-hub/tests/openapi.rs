//! The OpenAPI document: the hub serves the committed file, every documented operation is
//! routed, and the wire types' JSON matches the documented schemas.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use pht_api::{requests, v1, Credentials, HubRequest};
use pht_core::job::RouteMode;
use pht_core::KeyAlgorithm;
use serde_json::Value;
use support::{job, TestHub};
use uuid::Uuid;

fn committed_document() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap()
}

#[tokio::test]
async fn served_document_equals_the_committed_file() {
    let hub = TestHub::start().await;
    let answer = hub
        .call(&requests::openapi_document(), &Credentials::Anonymous)
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(
        answer.headers["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(
        std::str::from_utf8(&answer.body).unwrap(),
        committed_document()
    );
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let hub = TestHub::start().await;
    let document: Value = serde_json::from_str(&committed_document()).unwrap();
    let paths = document["paths"].as_object().unwrap();
    for (path_template, operations) in paths {
        let path = path_template
            .replace("{job_id}", &Uuid::nil().to_string())
            .replace("{station}", "some-station");
        for method in operations.as_object().unwrap().keys() {
            let request = HubRequest {
                method: match method.as_str() {
                    "get" => requests::HttpMethod::Get,
                    "post" => requests::HttpMethod::Post,
                    "put" => requests::HttpMethod::Put,
                    other => panic!("undocumented method {other}"),
                },
                path: path.clone(),
                query: None,
                content_type: None,
                body: Vec::new(),
                timeout: Duration::from_secs(1),
            };
            let answer = hub.call(&request, &Credentials::Anonymous).await;
            assert_ne!(
                answer.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            if answer.status == StatusCode::NOT_FOUND {
                assert_ne!(
                    answer.error().message,
                    "no such endpoint; see /v1/openapi.json",
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }
}

/// Checks `value` against the subset of JSON Schema the document uses for shapes: object
/// properties (no undocumented, no missing required), arrays, `$ref` and `oneOf`.
fn conforms(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return conforms(
            document,
            &document["components"]["schemas"][name],
            value,
            at,
        );
    }
    if let Some(alternatives) = schema["oneOf"].as_array() {
        return alternatives
            .iter()
            .find(|alternative| conforms(document, alternative, value, at).is_ok())
            .map(|_| ())
            .ok_or_else(|| format!("{at}: matches no alternative: {value}"));
    }
    match value {
        Value::Object(fields) if schema["properties"].is_object() => {
            let properties = schema["properties"].as_object().unwrap();
            for (name, field_value) in fields {
                let property = properties
                    .get(name)
                    .ok_or_else(|| format!("{at}.{name} is not documented"))?;
                conforms(document, property, field_value, &format!("{at}.{name}"))?;
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let required = required.as_str().unwrap();
                if !fields.contains_key(required) {
                    return Err(format!("{at}.{required} is required but absent"));
                }
            }
            Ok(())
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (item_idx, item) in items.iter().enumerate() {
                conforms(
                    document,
                    &schema["items"],
                    item,
                    &format!("{at}[{item_idx}]"),
                )?;
            }
            Ok(())
        }
        Value::Null => match &schema["type"] {
            Value::Array(types) if types.contains(&Value::from("null")) => Ok(()),
            Value::String(kind) if kind == "null" => Ok(()),
            _ => Err(format!("{at} is null but not nullable")),
        },
        _ => Ok(()),
    }
}

fn check(document: &Value, schema_name: &str, body: &[u8]) {
    let value: Value = serde_json::from_slice(body).unwrap();
    let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{schema_name}") });
    if let Err(mismatch) = conforms(document, &schema, &value, schema_name) {
        panic!("{mismatch}");
    }
}

#[tokio::test]
async fn responses_match_their_documented_schemas() {
    let document: Value = serde_json::from_str(&committed_document()).unwrap();
    let hub = TestHub::start().await;
    let first = hub.add_station("first", KeyAlgorithm::Ed25519).await;
    let second = hub.add_station("second", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::new_v4();
    let envelope = job(
        job_id,
        RouteMode::Sequential,
        &["first", "second"],
        hub.clock.now(),
    )
    .sign(&alice_key);
    let submitted = hub.call(&requests::submit_job(&envelope), &alice).await;
    check(&document, "JobStatus", &submitted.body);
    let work = hub
        .call(&requests::poll_work("first", Duration::ZERO), &first)
        .await
        .expect_status(StatusCode::OK);
    check(&document, "WorkItem", &work.body);
    let receipt = hub
        .upload(&first, job_id, b"bundle", Some(b"state"))
        .await
        .expect_status(StatusCode::OK);
    check(&document, "ResultReceipt", &receipt.body);
    let report = hub
        .call(
            &requests::report_stop_status(
                job_id,
                "second",
                &v1::StopStatusReport {
                    status: v1::ReportedStopState::Running,
                    reason: None,
                },
            ),
            &second,
        )
        .await
        .expect_status(StatusCode::OK);
    check(&document, "StopStatus", &report.body);
    let status = hub.call(&requests::job_status(job_id), &alice).await;
    check(&document, "JobStatus", &status.body);
    let results = hub.call(&requests::list_results(job_id), &alice).await;
    check(&document, "ResultList", &results.body);
    let directory = hub
        .call(&requests::station_directory("second"), &first)
        .await;
    check(&document, "StationDirectoryEntry", &directory.body);
    let stations = hub
        .call(&requests::list_stations(), &support::admin())
        .await;
    check(&document, "StationList", &stations.body);
    let researchers = hub
        .call(&requests::list_researchers(), &support::admin())
        .await;
    check(&document, "ResearcherList", &researchers.body);
    let refused = hub
        .call(&requests::job_status(job_id), &Credentials::Anonymous)
        .await;
    check(&document, "ErrorBody", &refused.body);
    let health = hub.call(&requests::health(), &Credentials::Anonymous).await;
    check(&document, "Health", &health.body);
}
