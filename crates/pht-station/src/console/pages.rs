//! One handler per route. Each checks the session (and, for a form, its CSRF token and the
//! operator's role), then reads the station's records or calls the station method the CLI
//! calls, and renders a screen. After an action it redirects to a page with a fixed message
//! (`?done=…` picks one of a few texts; nothing typed is reflected).

// The helpers' `Err` is the response a handler returns at once, on a path taken once per
// request: boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{self, SignedIn};
use super::views::{self, decision_form, page, verdict, Flash, Screen};
use super::{Console, PAGE_SIZE};
use crate::audit::{AuditEntry, AuditEvent, AuditLog};
use crate::engine::Engine;
use crate::operators::Operators;
use crate::run_index::Queue;
use crate::store::{OutputDecision, RunRecord, RunStatus, StoreError};
use crate::StationError;

/// Where a connection came from, when it came over TCP (a Unix socket has no address).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<std::net::SocketAddr>);

type Shared<E> = State<Arc<Console<E>>>;

/// The most of a run's log shown on its page (the end of it, where errors are).
const LOG_SHOWN_BYTES: usize = 64 * 1024;
/// The most of a text output shown for review.
const TEXT_SHOWN_BYTES: usize = 64 * 1024;
/// Table rows shown for review; the rest are in the file.
const TABLE_SHOWN_ROWS: usize = 200;
/// Audit entries shown on a run's timeline.
const TIMELINE_ENTRIES: usize = 500;

fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// A path of this console to return to after signing in: relative, no scheme or host.
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.starts_with("/login")
        && next.len() <= 512
        && next.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        next
    } else {
        "/"
    }
}

/// The messages a redirect may ask for, by code.
fn done_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "approved" => "Approved. The run is being carried out; this page shows its progress when reloaded.",
        "rejected" => "Rejected. The run will not be carried out.",
        "released" => "Released. The outputs were sealed for the researcher.",
        "reviewed" => "Your release is recorded. The policy asks for more distinct reviewers before the outputs leave.",
        "blocked" => "Blocked. The outputs will not leave the station.",
        "overridden" => "Released over the failed checks. The override is in the audit log.",
        "verified" => "The audit log was verified just now.",
        _ => return None,
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    job: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

impl PageQuery {
    fn flash(&self) -> Option<Flash> {
        let text = done_message(self.done.as_deref()?)?;
        Some(Flash {
            text: text.to_string(),
            error: false,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

impl<E: Engine + 'static> Console<E> {
    fn station_id(&self) -> &str {
        &self.station.config().station_id
    }

    /// The signed-in operator of a request, checked against the operators file as it is now
    /// (an operator removed or given another role since is signed out).
    fn signed_in(&self, headers: &HeaderMap) -> Option<SignedIn> {
        let token = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|value| auth::cookie(value, auth::SESSION_COOKIE))?;
        let signed_in = self.sessions.get(token)?;
        let current = Operators::load(&self.station.config().state_dir).ok()?;
        match current.get(&signed_in.operator) {
            Some(operator) if operator.role == signed_in.role => Some(signed_in),
            _ => {
                self.sessions.end_all_of(&signed_in.operator);
                None
            }
        }
    }

    /// The operator of a page request, or a redirect to sign in that comes back here.
    fn viewer(&self, headers: &HeaderMap, uri: &Uri) -> Result<SignedIn, Response> {
        self.signed_in(headers).ok_or_else(|| {
            let back = uri.path_and_query().map_or("/", |p| p.as_str());
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("next", safe_next(back))
                .finish();
            see_other(&format!("/login?{query}"))
        })
    }

    /// The operator of a form, whose CSRF token must be this session's.
    fn actor(&self, headers: &HeaderMap, csrf: Option<&str>) -> Result<SignedIn, Response> {
        let Some(signed_in) = self.signed_in(headers) else {
            return Err(see_other("/login"));
        };
        match csrf {
            Some(token) if auth::tokens_match(token, &signed_in.csrf) => Ok(signed_in),
            _ => Err(self.problem(
                Some(&signed_in),
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this console, so nothing was done. Go back, reload the page and try again.",
            )),
        }
    }

    fn problem(&self, signed_in: Option<&SignedIn>, status: StatusCode, text: &str) -> Response {
        let flash = Flash {
            text: text.to_string(),
            error: true,
        };
        html_response(
            status,
            page(
                self.station_id(),
                "Not done",
                Screen::None,
                signed_in,
                Some(&flash),
                html! { p { a href="/" { "Back to the overview" } } },
            ),
        )
    }

    fn forbidden(&self, signed_in: &SignedIn, action: &str, who: &str) -> Response {
        self.problem(
            Some(signed_in),
            StatusCode::FORBIDDEN,
            &format!(
                "Your role ({}) may not {action}; {who} can. Nothing was done.",
                views::role_name(signed_in.role)
            ),
        )
    }

    /// A station refusal as a page: the station's own words, with a status that fits.
    fn refused(&self, signed_in: &SignedIn, error: &StationError) -> Response {
        let status = match error {
            StationError::Store(StoreError::UnknownRun { .. }) => StatusCode::NOT_FOUND,
            StationError::Store(StoreError::RunBusy { .. })
            | StationError::Approve(_)
            | StationError::Release(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        self.problem(Some(signed_in), status, &error.to_string())
    }

    fn render(
        &self,
        signed_in: &SignedIn,
        title: &str,
        screen: Screen,
        flash: Option<Flash>,
        body: Markup,
    ) -> Response {
        html_response(
            StatusCode::OK,
            page(
                self.station_id(),
                title,
                screen,
                Some(signed_in),
                flash.as_ref(),
                body,
            ),
        )
    }

    fn load_run(&self, signed_in: &SignedIn, run_id: &str) -> Result<RunRecord, Response> {
        self.station
            .store()
            .load(run_id)
            .map_err(|error| self.refused(signed_in, &error.into()))
    }

    fn audit(&self, event: AuditEvent) {
        if let Err(error) = self.station.record_event(event) {
            tracing::error!(%error, "could not append a console event to the audit log");
        }
    }
}

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        views::STYLESHEET,
    )
        .into_response()
}

/// No icon: answered without a redirect to the sign-in page, which browsers ask for on their own.
pub async fn favicon() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

pub async fn not_found<E: Engine + 'static>(
    State(console): Shared<E>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    match console.viewer(&headers, &uri) {
        Ok(signed_in) => console.problem(
            Some(&signed_in),
            StatusCode::NOT_FOUND,
            "There is no such page in the console.",
        ),
        Err(redirect) => redirect,
    }
}

// ---------------------------------------------------------------------------------------------
// Signing in and out

/// The sign-in token a browser already holds (a second tab, or a page that loaded another
/// resource through the sign-in page), so that it is not replaced under an open form.
fn held_login_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| auth::cookie(value, auth::LOGIN_COOKIE))
        .filter(|token| token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
}

pub async fn login_form<E: Engine + 'static>(
    State(console): Shared<E>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Response {
    let token = held_login_token(&headers).unwrap_or_else(auth::random_token);
    let next = safe_next(query.next.as_deref().unwrap_or("/")).to_string();
    let mut response = html_response(
        StatusCode::OK,
        views::login(console.station_id(), &token, &next, None),
    );
    set_cookie(
        &mut response,
        &auth::set_cookie(
            auth::LOGIN_COOKIE,
            &token,
            Duration::from_secs(3600),
            console.secure,
        ),
    );
    response
}

fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = header::HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

pub async fn login<E: Engine + 'static>(
    State(console): Shared<E>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return console.problem(
            None,
            StatusCode::BAD_REQUEST,
            "The sign-in form was incomplete.",
        );
    };
    let station_id = console.station_id().to_string();
    let next = safe_next(&form.next).to_string();
    let again = |status: StatusCode, problem: &str| {
        // A fresh form token for the next try.
        let token = auth::random_token();
        let mut response = html_response(
            status,
            views::login(&station_id, &token, &next, Some(problem)),
        );
        set_cookie(
            &mut response,
            &auth::set_cookie(
                auth::LOGIN_COOKIE,
                &token,
                Duration::from_secs(3600),
                console.secure,
            ),
        );
        response
    };
    let login_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| auth::cookie(value, auth::LOGIN_COOKIE));
    if !login_cookie.is_some_and(|cookie| auth::tokens_match(&form.csrf, cookie)) {
        return again(
            StatusCode::FORBIDDEN,
            "The sign-in form expired or came from elsewhere. Sign in again on this page.",
        );
    }
    let name: String = form.name.trim().chars().take(64).collect();
    let mut keys = vec![format!("name:{}", name.to_lowercase())];
    if let Some(axum::Extension(Peer(Some(address)))) = peer {
        keys.push(format!("address:{}", address.ip()));
    }
    if let Some(wait) = console.throttle.wait(&keys) {
        let seconds = wait.as_secs().max(1);
        let mut response = again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed sign-ins. Try again in {seconds} s."),
        );
        if let Ok(value) = header::HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let state_dir = console.station.config().state_dir.clone();
    let (checked_name, password) = (name.clone(), form.password);
    let checked = tokio::task::spawn_blocking(move || {
        let operators = Operators::load(&state_dir)?;
        let known = operators.get(&checked_name).is_some();
        Ok::<_, crate::operators::OperatorError>((
            operators
                .verify(&checked_name, &password)
                .map(|operator| operator.role),
            known,
        ))
    })
    .await;
    match checked {
        Ok(Ok((Ok(role), _))) => {
            console.throttle.succeed(&keys[0]);
            let token = console.sessions.start(&name, role);
            console.audit(
                AuditEvent::new(&format!("operator:{name}"), "console_signed_in")
                    .detail("role", views::role_name(role)),
            );
            let mut response = see_other(&next);
            set_cookie(
                &mut response,
                &auth::set_cookie(
                    auth::SESSION_COOKIE,
                    &token,
                    auth::SESSION_LIFETIME,
                    console.secure,
                ),
            );
            set_cookie(
                &mut response,
                &auth::clear_cookie(auth::LOGIN_COOKIE, console.secure),
            );
            response
        }
        Ok(Ok((Err(_), known))) => {
            let lockout = console.throttle.fail(&keys);
            // The name is recorded only when it is an operator's: a password typed into the
            // name field must not land in the audit log.
            let mut event = AuditEvent::new("console", "console_sign_in_failed");
            if known {
                event = event.detail("operator", name.as_str());
            }
            if let Some(lockout) = lockout {
                event = event.detail("locked_out_seconds", lockout.as_secs());
            }
            console.audit(event);
            again(StatusCode::UNAUTHORIZED, "The name or password is wrong.")
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "the operators file cannot be used");
            again(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The station's operators file cannot be read; the station log says why.",
            )
        }
        Err(error) => {
            tracing::error!(%error, "checking a password stopped");
            again(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The password could not be checked.",
            )
        }
    }
}

pub async fn logout<E: Engine + 'static>(
    State(console): Shared<E>,
    headers: HeaderMap,
    form: Result<Form<ReasonForm>, FormRejection>,
) -> Response {
    let csrf = form.as_ref().ok().map(|Form(form)| form.csrf.as_str());
    let signed_in = match console.actor(&headers, csrf) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    if let Some(token) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| auth::cookie(value, auth::SESSION_COOKIE))
    {
        console.sessions.end(token);
    }
    console.audit(AuditEvent::new(
        &format!("operator:{}", signed_in.operator),
        "console_signed_out",
    ));
    let mut response = see_other("/login");
    set_cookie(
        &mut response,
        &auth::clear_cookie(auth::SESSION_COOKIE, console.secure),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// Overview

fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn time_text(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub async fn overview<E: Engine + 'static>(
    State(console): Shared<E>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let signed_in = match console.viewer(&headers, &uri) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let station = &console.station;
    let engine =
        match tokio::time::timeout(Duration::from_secs(2), station.engine().version()).await {
            Ok(Ok(version)) => (true, version),
            Ok(Err(error)) => (false, error.to_string()),
            Err(_) => (false, "Docker did not answer within 2 s".to_string()),
        };
    let store = station.store();
    let mut counts = BTreeMap::new();
    for queue in Queue::ALL {
        match store.queue(queue) {
            Ok(runs) => {
                counts.insert(queue, runs.len());
            }
            Err(error) => return console.refused(&signed_in, &error.into()),
        }
    }
    let total = store.count().unwrap_or_default();
    let state_dir = &station.config().state_dir;
    let free = pht_fs::free_bytes(state_dir);
    let contact = station.hub_contact();
    let hub_url = station
        .config()
        .hub
        .as_ref()
        .map(|hub| hub.display_address());
    let audit_check = console
        .audit_check
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let body = html! {
        h1 { "Overview" }
        section.card aria-labelledby="queues" {
            h2 id="queues" { "Waiting for someone" }
            table {
                caption.muted { "Runs that need an operator, and runs in progress" }
                tbody {
                    tr { th scope="row" { a href="/approvals" { "Awaiting approval" } } td.num { (counts[&Queue::AwaitingApproval]) } }
                    tr { th scope="row" { a href="/review" { "Outputs withheld for review" } } td.num { (counts[&Queue::Withheld]) } }
                    tr { th scope="row" { "Running now" } td.num { (counts[&Queue::Running]) } }
                    tr { th scope="row" { a href="/runs" { "All runs recorded" } } td.num { (total) } }
                }
            }
        }
        section.card aria-labelledby="health" {
            h2 id="health" { "Health" }
            dl.facts {
                dt { "Container engine" }
                dd {
                    @if engine.0 { (verdict("ok")) " " (engine.1) }
                    @else { (verdict("error")) " " (engine.1) }
                }
                dt { "Hub" }
                dd {
                    @match (&hub_url, contact.polling) {
                        (None, _) => { "No hub configured: this station runs only what operators start." }
                        (Some(url), false) => { code { (url) } " — this console process does not poll the hub (" code { "pht-station run" } " does)." }
                        (Some(url), true) => {
                            code { (url) } br;
                            @if let Some(at) = &contact.last_contact { "Last answered " (time_text(at)) "." }
                            @else { "Not reached yet." }
                            @if let Some((at, failure)) = &contact.last_failure {
                                br; (verdict("error")) " Last failure " (time_text(at)) ": " (failure)
                            }
                        }
                    }
                }
                dt { "Free space for state" }
                dd {
                    @match &free {
                        Ok(bytes) => { (bytes_text(*bytes)) " free in " code { (state_dir.display().to_string()) } }
                        Err(error) => { (verdict("error")) " cannot tell: " (error.to_string()) }
                    }
                }
                dt { "Audit log" }
                dd {
                    @match &audit_check {
                        None => { "Not verified yet by this console. " }
                        Some(check) => {
                            @match &check.verification {
                                Ok(verified) if verified.problem.is_none() => {
                                    (verdict("ok")) " " (verified.entries) " entries verify (checked " (time_text(&check.at)) ")."
                                }
                                Ok(verified) => {
                                    @let (line, problem) = verified.problem.clone().unwrap_or_default();
                                    (verdict("broken")) " broken at line " (line) ": " (problem) " (checked " (time_text(&check.at)) ")."
                                }
                                Err(error) => { (verdict("error")) " cannot be read: " (error) }
                            }
                        }
                    }
                    form method="post" action="/audit/verify" {
                        input type="hidden" name="csrf" value=(signed_in.csrf);
                        button.secondary type="submit" { "Verify now" }
                    }
                }
            }
        }
    };
    console.render(
        &signed_in,
        "Overview",
        Screen::Overview,
        query.flash(),
        body,
    )
}

// ---------------------------------------------------------------------------------------------
// Approvals

fn parameters_table(parameters: &BTreeMap<String, serde_json::Value>) -> Markup {
    html! {
        @if parameters.is_empty() { p.muted { "No parameters." } }
        @else {
            table {
                caption { "Parameters" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
                tbody {
                    @for (name, value) in parameters {
                        tr { td { code { (name) } } td { code { (value.to_string()) } } }
                    }
                }
            }
        }
    }
}

fn resources_table<E>(console: &Console<E>, record: &RunRecord) -> Markup {
    let ceilings = console.station.policy().resources();
    let requested = record.train.resources.clone().unwrap_or_default();
    let granted = record
        .decision
        .as_ref()
        .and_then(|decision| decision.get("grant"))
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let grant = |field: &str| granted.get(field).map(ToString::to_string);
    let rows = [
        (
            "CPUs",
            requested.cpus.map(|cpus| cpus.to_string()),
            grant("cpus"),
            ceilings.cpus.to_string(),
        ),
        (
            "Memory",
            requested.memory.map(|memory| bytes_text(memory.0)),
            grant("memory_bytes").map(|bytes| bytes_text(bytes.parse().unwrap_or_default())),
            bytes_text(ceilings.memory_bytes),
        ),
        (
            "Wall clock",
            requested
                .wall_clock
                .map(|wall| format!("{} s", wall.0.as_secs())),
            grant("wall_clock_seconds").map(|seconds| format!("{seconds} s")),
            format!("{} s", ceilings.wall_clock.as_secs()),
        ),
    ];
    html! {
        table {
            caption { "Resources" }
            thead { tr { th scope="col" { "Resource" } th scope="col" { "Train asks for" } th scope="col" { "Would be granted" } th scope="col" { "Policy ceiling" } } }
            tbody {
                @for (name, asked, given, ceiling) in rows {
                    tr {
                        th scope="row" { (name) }
                        td { (asked.unwrap_or_else(|| "default".into())) }
                        td { (given.unwrap_or_else(|| "—".into())) }
                        td { (ceiling) }
                    }
                }
            }
        }
    }
}

fn train_facts(record: &RunRecord) -> Markup {
    html! {
        dl.facts {
            dt { "Train" }
            dd {
                (record.train.name.as_deref().unwrap_or("(unnamed)"))
                @if let Some(version) = &record.train.version { " " (version) }
            }
            @if let Some(description) = &record.train.description {
                dt { "Description" } dd { (description) }
            }
            @if let Some(purpose) = &record.train.purpose {
                dt { "Purpose" } dd { (purpose) }
            }
            dt { "Image" } dd { code { (record.train.repository) } br; code { (record.train.digest) } }
            dt { "Signed by" } dd { (record.signer.as_deref().unwrap_or("(not verified)")) }
            @if let Some(base) = &record.base {
                dt { "Base image" } dd { code { (base.reference) } @if let Some(signer) = &base.signer { " signed by " (signer) } }
            }
            @if let Some(job) = &record.job {
                dt { "Job" } dd { code { (job.job_id) } " signed by " (job.signer) ", stop " (job.stop_index + 1) }
            }
            dt { "Datasets" }
            dd {
                @if record.train.datasets.is_empty() { "none" }
                @for (i, dataset) in record.train.datasets.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (dataset) }
                }
            }
            dt { "Requested" } dd { (time_text(&record.created_at)) }
        }
    }
}

fn policy_reasons(record: &RunRecord) -> Markup {
    let reasons: Vec<serde_json::Value> = record
        .decision
        .as_ref()
        .and_then(|decision| decision.get("reasons"))
        .and_then(|reasons| reasons.as_array().cloned())
        .unwrap_or_default();
    let text = |value: &serde_json::Value, field: &str| {
        value
            .get(field)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    html! {
        @if reasons.is_empty() {
            @if !record.reasons.is_empty() {
                ul { @for reason in &record.reasons { li { (reason) } } }
            }
        } @else {
            table {
                caption { "Why the policy asks for approval" }
                thead { tr { th scope="col" { "Rule" } th scope="col" { "Reason" } th scope="col" { "Expected" } th scope="col" { "Actual" } } }
                tbody {
                    @for reason in &reasons {
                        tr {
                            td { code { (text(reason, "rule")) } }
                            td { (text(reason, "message")) }
                            td { (text(reason, "expected")) }
                            td { (text(reason, "actual")) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn approvals<E: Engine + 'static>(
    State(console): Shared<E>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let signed_in = match console.viewer(&headers, &uri) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let pending = match console.station.store().queue(Queue::AwaitingApproval) {
        Ok(pending) => pending,
        Err(error) => return console.refused(&signed_in, &error.into()),
    };
    let may_approve = signed_in.role.may_approve();
    let body = html! {
        h1 { "Approvals" }
        @if pending.is_empty() { p { "No run is waiting for approval." } }
        @if !may_approve && !pending.is_empty() {
            p.muted { "Your role (" (views::role_name(signed_in.role)) ") may look but not approve; an approver or admin decides." }
        }
        @for record in &pending {
            section.card aria-labelledby=(format!("run-{}", record.run_id)) {
                h2 id=(format!("run-{}", record.run_id)) { "Run " a href=(format!("/runs/{}", record.run_id)) { (record.run_id) } }
                (train_facts(record))
                (parameters_table(&record.parameters))
                (resources_table(&console, record))
                (policy_reasons(record))
                @if may_approve {
                    (decision_form(&signed_in, &format!("/runs/{}/approve", record.run_id), "Approve and run", "", "Reason (optional)", false))
                    (decision_form(&signed_in, &format!("/runs/{}/reject", record.run_id), "Reject", "danger", "Reason for rejecting", true))
                }
            }
        }
    };
    console.render(
        &signed_in,
        "Approvals",
        Screen::Approvals,
        query.flash(),
        body,
    )
}

pub async fn approve<E: Engine + 'static>(
    State(console): Shared<E>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ReasonForm>, FormRejection>,
) -> Response {
    let csrf = form.as_ref().ok().map(|Form(form)| form.csrf.as_str());
    let signed_in = match console.actor(&headers, csrf) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    if !signed_in.role.may_approve() {
        return console.forbidden(&signed_in, "approve runs", "an approver or an admin");
    }
    let record = match console.load_run(&signed_in, &run_id) {
        Ok(record) => record,
        Err(response) => return response,
    };
    if record.status != RunStatus::AwaitingApproval {
        return console.refused(
            &signed_in,
            &crate::pipeline::approve::ApproveError::NotAwaitingApproval {
                run_id: run_id.clone(),
                status: record.status,
                action: "approved",
            }
            .into(),
        );
    }
    let reason = form
        .ok()
        .map(|Form(form)| form.reason.trim().to_string())
        .filter(|reason| !reason.is_empty());
    // Carrying the run out takes as long as the train runs: it goes on after this response,
    // exactly as `pht-station approve` would carry it out, and the run's page shows how it goes.
    let station = console.station.clone();
    let operator = signed_in.operator.clone();
    let approved_run = run_id.clone();
    tokio::spawn(async move {
        if let Err(error) = station.approve(&approved_run, &operator, reason).await {
            tracing::error!(run_id = %approved_run, %error, "the approved run could not be carried out");
        }
    });
    // The approval is recorded before the run starts; wait for that so the next page shows it.
    for _ in 0..50 {
        match console.station.store().load(&run_id) {
            Ok(record)
                if record.approval.is_some() || record.status != RunStatus::AwaitingApproval =>
            {
                break
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    see_other(&format!("/runs/{run_id}?done=approved"))
}

pub async fn reject<E: Engine + 'static>(
    State(console): Shared<E>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ReasonForm>, FormRejection>,
) -> Response {
    let csrf = form.as_ref().ok().map(|Form(form)| form.csrf.as_str());
    let signed_in = match console.actor(&headers, csrf) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    if !signed_in.role.may_approve() {
        return console.forbidden(&signed_in, "reject runs", "an approver or an admin");
    }
    let reason = form
        .map(|Form(form)| form.reason.trim().to_string())
        .unwrap_or_default();
    if reason.is_empty() {
        return console.problem(
            Some(&signed_in),
            StatusCode::BAD_REQUEST,
            "A rejection needs a reason; it is kept in the audit log and told to the researcher.",
        );
    }
    match console
        .station
        .reject(&run_id, &signed_in.operator, &reason)
    {
        Ok(_) => see_other(&format!("/runs/{run_id}?done=rejected")),
        Err(error) => console.refused(&signed_in, &error),
    }
}

// ---------------------------------------------------------------------------------------------
// Output review

pub async fn review_queue<E: Engine + 'static>(
    State(console): Shared<E>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let signed_in = match console.viewer(&headers, &uri) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let withheld = match console.station.store().queue(Queue::Withheld) {
        Ok(withheld) => withheld,
        Err(error) => return console.refused(&signed_in, &error.into()),
    };
    let required = console.station.policy().outputs().reviewers_required();
    let body = html! {
        h1 { "Output review" }
        p { "The policy asks for " strong { (required) } " distinct reviewer" @if required != 1 { "s" } " to release withheld outputs; a block by any reviewer stops the release." }
        @if withheld.is_empty() { p { "No outputs are waiting for review." } }
        @else {
            table {
                caption { "Withheld outputs, oldest first" }
                thead { tr { th scope="col" { "Run" } th scope="col" { "Train" } th scope="col" { "Checks" } th scope="col" { "Releases so far" } th scope="col" { "Finished" } } }
                tbody {
                    @for record in &withheld {
                        tr {
                            td { a href=(format!("/runs/{}/review", record.run_id)) { (record.run_id) } }
                            td { (record.train.name.as_deref().unwrap_or(&record.train.repository)) }
                            td { (verdict(record.checks.as_deref().unwrap_or("unchecked"))) }
                            td.num { (releasers(record).len()) " of " (required) }
                            td { (record.finished_at.as_ref().map(time_text).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        p { "Blocked outputs of earlier runs are on their run pages; " a href="/runs" { "all runs" } "." }
    };
    console.render(
        &signed_in,
        "Output review",
        Screen::Review,
        query.flash(),
        body,
    )
}

fn releasers(record: &RunRecord) -> BTreeSet<&str> {
    record
        .reviews
        .iter()
        .filter(|review| review.decision == OutputDecision::Released)
        .map(|review| review.operator.as_str())
        .collect()
}

/// Where findings point in one output file: (line, field) of each flagged cell.
fn flagged_cells(result: &pht_checks::OutputResult) -> BTreeSet<(u64, u64)> {
    result
        .checks
        .iter()
        .filter(|check| check.status != pht_checks::Status::Pass)
        .flat_map(|check| check.positions.iter())
        .filter_map(|position| Some((position.line, position.field?)))
        .collect()
}

fn table_preview(bytes: &[u8], flagged: &BTreeSet<(u64, u64)>) -> Markup {
    let (records, more) = pht_checks::preview_table(bytes, TABLE_SHOWN_ROWS + 1);
    let mut records = records.into_iter();
    let header = records.next().unwrap_or_default();
    html! {
        table {
            thead {
                tr { @for cell in &header { th scope="col" { (cell.text) } } }
            }
            tbody {
                @for record in records {
                    tr {
                        @for (field, cell) in record.iter().enumerate() {
                            @let is_flagged = flagged.contains(&(cell.line, field as u64 + 1));
                            @let numeric = !cell.text.is_empty() && cell.text.trim().parse::<f64>().is_ok();
                            @if is_flagged {
                                td.flagged.num[numeric] title="flagged by the checks" { (cell.text) }
                            } @else {
                                td.num[numeric] { (cell.text) }
                            }
                        }
                    }
                }
            }
        }
        @if more { p.muted { "Only the first " (TABLE_SHOWN_ROWS) " rows are shown." } }
    }
}

fn output_body(
    run_id: &str,
    path: &str,
    bytes: Option<&[u8]>,
    result: &pht_checks::OutputResult,
) -> Markup {
    let Some(bytes) = bytes else {
        return html! { p.muted { "The file is no longer in the run directory." } };
    };
    let format = result.properties.format.as_str();
    let is_png = bytes.starts_with(b"\x89PNG\r\n\x1a\n");
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("path", path)
        .finish();
    match result.output_type {
        pht_checks::OutputType::Figure if is_png => html! {
            img.figure src=(format!("/runs/{run_id}/figure?{query}")) alt=(format!("Figure {path} written by the train"));
        },
        pht_checks::OutputType::Table if matches!(format, "csv" | "tsv") => {
            table_preview(bytes, &flagged_cells(result))
        }
        _ => {
            let shown = &bytes[..bytes.len().min(TEXT_SHOWN_BYTES)];
            html! {
                pre { (String::from_utf8_lossy(shown)) }
                @if bytes.len() > TEXT_SHOWN_BYTES { p.muted { "Only the first " (bytes_text(TEXT_SHOWN_BYTES as u64)) " are shown." } }
            }
        }
    }
}

pub async fn review<E: Engine + 'static>(
    State(console): Shared<E>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let signed_in = match console.viewer(&headers, &uri) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let record = match console.load_run(&signed_in, &run_id) {
        Ok(record) => record,
        Err(response) => return response,
    };
    let run_dir = console.station.store().run_dir(&run_id);
    let report: Option<pht_checks::CheckReport> = std::fs::read(run_dir.join("report.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let decision = record.output_decision.as_ref().map(|d| d.decision);
    let required = console.station.policy().outputs().reviewers_required();
    let released_by = releasers(&record);
    let body = html! {
        h1 { "Output review: run " a href=(format!("/runs/{run_id}")) { (run_id) } }
        section.card {
            (train_facts(&record))
            dl.facts {
                dt { "Checks" } dd { (verdict(record.checks.as_deref().unwrap_or("unchecked"))) }
                dt { "Outputs" }
                dd {
                    @match &record.output_decision {
                        None => { "not decided" }
                        Some(decided) => {
                            (verdict(match decided.decision { OutputDecision::Released => "released", OutputDecision::Withheld => "withheld", OutputDecision::Blocked => "blocked" }))
                            " by " (decided.by)
                            @if let Some(reason) = &decided.reason { ": " (reason) }
                        }
                    }
                }
                dt { "Reviews" }
                dd {
                    (released_by.len()) " of " (required) " distinct release" @if required != 1 { "s" } " needed"
                    @if !record.reviews.is_empty() {
                        ul {
                            @for review in &record.reviews {
                                li { (review.operator) " " (match review.decision { OutputDecision::Released => "released", OutputDecision::Blocked => "blocked", OutputDecision::Withheld => "withheld" }) " at " (time_text(&review.at)) ": " (review.reason) }
                            }
                        }
                    }
                }
            }
            @if decision == Some(OutputDecision::Withheld) {
                @if signed_in.role.may_review() {
                    @if released_by.contains(signed_in.operator.as_str()) {
                        p { "You have released these outputs already; another reviewer must release them too." }
                    } @else {
                        (decision_form(&signed_in, &format!("/runs/{run_id}/release"), "Release", "", "Reason for releasing", true))
                    }
                    (decision_form(&signed_in, &format!("/runs/{run_id}/block"), "Block", "danger", "Reason for blocking", true))
                } @else {
                    p.muted { "Your role (" (views::role_name(signed_in.role)) ") may look but not decide; a reviewer or admin does." }
                }
            }
            @if decision == Some(OutputDecision::Blocked) && record.status == RunStatus::Succeeded {
                @if signed_in.role.is_admin() {
                    h2 { "Override" }
                    p { "These outputs are blocked. An admin may release them anyway; the override and its reason are audited and named in the signed provenance." }
                    (decision_form(&signed_in, &format!("/runs/{run_id}/override"), "Release over the block", "danger", "Reason for the override", true))
                } @else {
                    p.muted { "These outputs are blocked; only an admin may override." }
                }
            }
        }
        @match &report {
            None => { p { "This run has no check report: only a run that succeeded has outputs to review." } }
            Some(report) => {
                section.card {
                    h2 { "All outputs together" }
                    p { (verdict(report.collection.status.as_str())) " " (report.collection.n_files) " files, " (bytes_text(report.collection.n_bytes)) }
                    (findings(&report.collection.checks))
                }
                @for (path, result) in &report.results {
                    @let bytes = std::fs::read(run_dir.join("outputs").join(path)).ok();
                    section.card {
                        h2 { code { (path) } " " (verdict(result.status.as_str())) }
                        p { (result.summary) }
                        (findings(&result.checks))
                        (output_body(&run_id, path, bytes.as_deref(), result))
                    }
                }
            }
        }
    };
    console.render(
        &signed_in,
        "Output review",
        Screen::Review,
        query.flash(),
        body,
    )
}

fn findings(checks: &[pht_checks::RuleResult]) -> Markup {
    let flagged: Vec<&pht_checks::RuleResult> = checks
        .iter()
        .filter(|check| check.status != pht_checks::Status::Pass)
        .collect();
    html! {
        @if !flagged.is_empty() {
            table {
                caption { "Findings" }
                thead { tr { th scope="col" { "Rule" } th scope="col" { "Verdict" } th scope="col" { "What was found" } th scope="col" { "Where" } } }
                tbody {
                    @for check in flagged {
                        tr {
                            td { code { (check.rule.as_str()) } }
                            td { (verdict(check.status.as_str())) }
                            td { (check.summary) }
                            td {
                                @for position in check.positions.iter().take(20) {
                                    "line " (position.line)
                                    @if let Some(field) = position.field { ", column " (field) }
                                    br;
                                }
                                @if check.positions.len() > 20 || check.positions_truncated { "and more" }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn figure<E: Engine + 'static>(
    State(console): Shared<E>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let signed_in = match console.viewer(&headers, &uri) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    if let Err(response) = console.load_run(&signed_in, &run_id) {
        return response;
    }
    let path = query.path.unwrap_or_default();
    let run_dir = console.station.store().run_dir(&run_id);
    // Only a file the checks reported on, and only a PNG: never a path made up by a request.
    let report: Option<pht_checks::CheckReport> = std::fs::read(run_dir.join("report.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let known = report.is_some_and(|report| report.results.contains_key(&path));
    let bytes = known
        .then(|| std::fs::read(run_dir.join("outputs").join(&path)).ok())
        .flatten();
    match bytes {
        Some(bytes) if bytes.starts_with(b"\x89PNG\r\n\x1a\n") => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CONTENT_DISPOSITION, "inline"),
            ],
            bytes,
        )
            .into_response(),
        _ => console.problem(
            Some(&signed_in),
            StatusCode::NOT_FOUND,
            "No such figure among this run's outputs.",
        ),
    }
}

/// The form of a release, block or override, with its session and role checked.
fn output_actor<E: Engine + 'static>(
    console: &Console<E>,
    headers: &HeaderMap,
    form: &Result<Form<ReasonForm>, FormRejection>,
    admin_only: bool,
) -> Result<(SignedIn, String), Response> {
    let csrf = form.as_ref().ok().map(|Form(form)| form.csrf.as_str());
    let signed_in = console.actor(headers, csrf)?;
    if admin_only && !signed_in.role.is_admin() {
        return Err(console.forbidden(&signed_in, "override blocked outputs", "only an admin"));
    }
    if !signed_in.role.may_review() {
        return Err(console.forbidden(
            &signed_in,
            "release or block outputs",
            "a reviewer or an admin",
        ));
    }
    let reason = form
        .as_ref()
        .map(|Form(form)| form.reason.trim().to_string())
        .unwrap_or_default();
    if reason.is_empty() {
        return Err(console.problem(
            Some(&signed_in),
            StatusCode::BAD_REQUEST,
            "A decision on outputs needs a reason; it is kept in the audit log and the signed provenance.",
        ));
    }
    Ok((signed_in, reason))
}

pub async fn release<E: Engine + 'static>(
    State(console): Shared<E>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ReasonForm>, FormRejection>,
) -> Response {
    let (signed_in, reason) = match output_actor(&console, &headers, &form, false) {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    // Releasing blocked outputs is an override: its own route, for admins.
    match console.station.store().load(&run_id) {
        Ok(record)
            if record.output_decision.as_ref().map(|d| d.decision)
                == Some(OutputDecision::Blocked) =>
        {
            return console.problem(
                Some(&signed_in),
                StatusCode::CONFLICT,
                "These outputs are blocked; only an admin may release them, with the override on the review page.",
            )
        }
        Ok(_) => {}
        Err(error) => return console.refused(&signed_in, &error.into()),
    }
    let station = console.station.clone();
    let (operator, released_run) = (signed_in.operator.clone(), run_id.clone());
    let released = tokio::task::spawn_blocking(move || {
        station.release_outputs(&released_run, &operator, &reason)
    })
    .await;
    match released {
        Ok(Ok(record)) => {
            let done = match record.output_decision.map(|d| d.decision) {
                Some(OutputDecision::Released) => "released",
                _ => "reviewed",
            };
            see_other(&format!("/runs/{run_id}/review?done={done}"))
        }
        Ok(Err(error)) => console.refused(&signed_in, &error),
        Err(error) => console.problem(
            Some(&signed_in),
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the release stopped: {error}"),
        ),
    }
}

pub async fn block<E: Engine + 'static>(
    State(console): Shared<E>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ReasonForm>, FormRejection>,
) -> Response {
    let (signed_in, reason) = match output_actor(&console, &headers, &form, false) {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    match console
        .station
        .block_outputs(&run_id, &signed_in.operator, &reason)
    {
        Ok(_) => see_other(&format!("/runs/{run_id}/review?done=blocked")),
        Err(error) => console.refused(&signed_in, &error),
    }
}

pub async fn override_block<E: Engine + 'static>(
    State(console): Shared<E>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ReasonForm>, FormRejection>,
) -> Response {
    let (signed_in, reason) = match output_actor(&console, &headers, &form, true) {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    match console.station.store().load(&run_id) {
        Ok(record)
            if record.output_decision.as_ref().map(|d| d.decision)
                != Some(OutputDecision::Blocked) =>
        {
            return console.problem(
                Some(&signed_in),
                StatusCode::CONFLICT,
                "Only blocked outputs are overridden; withheld outputs are released by reviewers.",
            )
        }
        Ok(_) => {}
        Err(error) => return console.refused(&signed_in, &error.into()),
    }
    let station = console.station.clone();
    let (operator, released_run) = (signed_in.operator.clone(), run_id.clone());
    let released = tokio::task::spawn_blocking(move || {
        station.release_outputs(&released_run, &operator, &reason)
    })
    .await;
    match released {
        Ok(Ok(_)) => see_other(&format!("/runs/{run_id}/review?done=overridden")),
        Ok(Err(error)) => console.refused(&signed_in, &error),
        Err(error) => console.problem(
            Some(&signed_in),
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the override stopped: {error}"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Runs

pub async fn runs<E: Engine + 'static>(
    State(console): Shared<E>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let signed_in = match console.viewer(&headers, &uri) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let store = console.station.store();
    let total = store.count().unwrap_or_default();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page_number = query.page.unwrap_or(1).clamp(1, pages);
    let records = match store.page((page_number - 1) * PAGE_SIZE, PAGE_SIZE) {
        Ok(records) => records,
        Err(error) => return console.refused(&signed_in, &error.into()),
    };
    let body = html! {
        h1 { "Runs" }
        p { (total) " runs recorded, newest first. Page " (page_number) " of " (pages) "." }
        table {
            caption.muted { "Runs on this page" }
            thead { tr { th scope="col" { "Run" } th scope="col" { "Status" } th scope="col" { "Outputs" } th scope="col" { "Train" } th scope="col" { "Requested" } } }
            tbody {
                @for record in &records {
                    tr {
                        td { a href=(format!("/runs/{}", record.run_id)) { (record.run_id) } }
                        td { (verdict(record.status.as_str())) }
                        td {
                            @match record.output_decision.as_ref().map(|d| d.decision) {
                                Some(OutputDecision::Released) => { (verdict("released")) }
                                Some(OutputDecision::Withheld) => { a href=(format!("/runs/{}/review", record.run_id)) { (verdict("withheld")) } }
                                Some(OutputDecision::Blocked) => { (verdict("blocked")) }
                                None => { "—" }
                            }
                        }
                        td { (record.train.name.as_deref().unwrap_or(&record.train.repository)) }
                        td { (time_text(&record.created_at)) }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if page_number > 1 { a href=(format!("/runs?page={}", page_number - 1)) rel="prev" { "← Newer" } }
            @if page_number < pages { a href=(format!("/runs?page={}", page_number + 1)) rel="next" { "Older →" } }
        }
    };
    console.render(&signed_in, "Runs", Screen::Runs, query.flash(), body)
}

fn entry_line(entry: &AuditEntry) -> Markup {
    html! {
        tr {
            td.num { (entry.seq) }
            td { (time_text(&entry.time)) }
            td { code { (entry.event) } }
            td { (entry.actor) }
            td {
                @if let Some(run_id) = &entry.run_id { a href=(format!("/runs/{run_id}")) { (run_id) } " " }
                @if let Some(decision) = &entry.decision { (decision) " " }
                @for reason in &entry.reasons { br; (reason) }
                @if let Some(job_id) = &entry.job_id { br; "job " code { (job_id) } }
            }
        }
    }
}

fn entries_table(caption: &str, entries: &[AuditEntry]) -> Markup {
    html! {
        table {
            caption { (caption) }
            thead { tr { th scope="col" { "#" } th scope="col" { "Time" } th scope="col" { "Event" } th scope="col" { "By" } th scope="col" { "Details" } } }
            tbody { @for entry in entries { (entry_line(entry)) } }
        }
    }
}

pub async fn run_detail<E: Engine + 'static>(
    State(console): Shared<E>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let signed_in = match console.viewer(&headers, &uri) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let record = match console.load_run(&signed_in, &run_id) {
        Ok(record) => record,
        Err(response) => return response,
    };
    let run_dir = console.station.store().run_dir(&run_id);
    let audit_path = console.station.audit().path().to_path_buf();
    let timeline_run = run_id.clone();
    let mut timeline = tokio::task::spawn_blocking(move || {
        AuditLog::read_entries(&audit_path, Some(&timeline_run))
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    if timeline.len() > TIMELINE_ENTRIES {
        timeline.drain(..timeline.len() - TIMELINE_ENTRIES);
    }
    let logs = std::fs::read(run_dir.join("logs.txt")).ok();
    let body = html! {
        h1 { "Run " (run_id) " " (verdict(record.status.as_str())) }
        section.card {
            (train_facts(&record))
            @if !record.reasons.is_empty() {
                h2 { "Reasons" }
                ul { @for reason in &record.reasons { li { (reason) } } }
            }
            @if let Some(approval) = &record.approval {
                p { "Decided by " (approval.by) " at " (time_text(&approval.at)) @if let Some(reason) = &approval.reason { ": " (reason) } }
            }
            @if record.status == RunStatus::AwaitingApproval { p { a href="/approvals" { "Decide on the approvals screen" } } }
        }
        section.card {
            h2 { "Outputs" }
            @if record.outputs.is_empty() { p { "None collected." } }
            @else {
                table {
                    thead { tr { th scope="col" { "File" } th scope="col" { "Size" } th scope="col" { "SHA-256" } } }
                    tbody {
                        @for output in &record.outputs {
                            tr { td { code { (output.path) } } td.num { (bytes_text(output.size)) } td { code { (output.sha256) } } }
                        }
                    }
                }
            }
            @if !record.refused_outputs.is_empty() {
                p { "Not collected:" }
                ul { @for refused in &record.refused_outputs { li { (refused) } } }
            }
            @if record.checks.is_some() { p { a href=(format!("/runs/{run_id}/review")) { "Checks and review" } } }
            dl.facts {
                dt { "Sealed result" }
                dd {
                    @match &record.sealed {
                        Some(sealed) => { code { (sealed.sha256) } " (" (bytes_text(sealed.size)) ")" }
                        None => { "not sealed" }
                    }
                }
                dt { "Delivered" }
                dd {
                    @match (&record.delivered_at, &record.reported) {
                        (Some(at), _) => { "to the hub at " (time_text(at)) }
                        (None, Some(reported)) => { "reported " (reported) " to the hub; result not delivered" }
                        (None, None) => { "not yet" }
                    }
                }
            }
        }
        section.card {
            h2 { "Timeline" }
            (entries_table("From the audit log", &timeline))
        }
        section.card {
            h2 { "Log" }
            @match &logs {
                None => { p.muted { "No log was kept." } }
                Some(logs) => {
                    @let start = logs.len().saturating_sub(LOG_SHOWN_BYTES);
                    @if start > 0 { p.muted { "The last " (bytes_text(LOG_SHOWN_BYTES as u64)) " of " (bytes_text(logs.len() as u64)) ":" } }
                    pre { (String::from_utf8_lossy(&logs[start..])) }
                }
            }
        }
    };
    console.render(&signed_in, "Run", Screen::Runs, query.flash(), body)
}

// ---------------------------------------------------------------------------------------------
// Audit

pub async fn audit<E: Engine + 'static>(
    State(console): Shared<E>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let signed_in = match console.viewer(&headers, &uri) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let audit_path = console.station.audit().path().to_path_buf();
    let (run, job, event) = (
        query.run.clone().filter(|v| !v.is_empty()),
        query.job.clone().filter(|v| !v.is_empty()),
        query.event.clone().filter(|v| !v.is_empty()),
    );
    let filter = (run.clone(), job.clone(), event.clone());
    let read = tokio::task::spawn_blocking(move || {
        let entries = AuditLog::read_entries(&audit_path, filter.0.as_deref())?;
        Ok::<_, crate::audit::AuditError>(
            entries
                .into_iter()
                .filter(|entry| {
                    filter
                        .1
                        .as_deref()
                        .is_none_or(|job| entry.job_id.as_deref() == Some(job))
                        && filter.2.as_deref().is_none_or(|event| entry.event == event)
                })
                .collect::<Vec<_>>(),
        )
    })
    .await;
    let entries = match read {
        Ok(Ok(entries)) => entries,
        Ok(Err(error)) => return console.refused(&signed_in, &error.into()),
        Err(error) => {
            return console.problem(
                Some(&signed_in),
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("reading the audit log stopped: {error}"),
            )
        }
    };
    let total = entries.len() as u64;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page_number = query.page.unwrap_or(1).clamp(1, pages);
    // Newest first.
    let shown: Vec<AuditEntry> = entries
        .into_iter()
        .rev()
        .skip(((page_number - 1) * PAGE_SIZE) as usize)
        .take(PAGE_SIZE as usize)
        .collect();
    let filter_query = |page: u64| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [("run", &run), ("job", &job), ("event", &event)] {
            if let Some(value) = value {
                query.append_pair(key, value);
            }
        }
        query.append_pair("page", &page.to_string());
        format!("/audit?{}", query.finish())
    };
    let body = html! {
        h1 { "Audit log" }
        form method="get" action="/audit" {
            p {
                label for="run" { "Run " } input type="text" id="run" name="run" value=(run.as_deref().unwrap_or(""));
                " "
                label for="job" { "Job " } input type="text" id="job" name="job" value=(job.as_deref().unwrap_or(""));
                " "
                label for="event" { "Event " } input type="text" id="event" name="event" value=(event.as_deref().unwrap_or(""));
                " "
                button type="submit" { "Filter" }
            }
        }
        form method="post" action="/audit/verify" {
            input type="hidden" name="csrf" value=(signed_in.csrf);
            button.secondary type="submit" { "Verify the whole log now" }
        }
        p { (total) " entries match, newest first. Page " (page_number) " of " (pages) "." }
        (entries_table("Entries", &shown))
        nav.pager aria-label="Pages" {
            @if page_number > 1 { a href=(filter_query(page_number - 1)) rel="prev" { "← Newer" } }
            @if page_number < pages { a href=(filter_query(page_number + 1)) rel="next" { "Older →" } }
        }
    };
    console.render(&signed_in, "Audit log", Screen::Audit, query.flash(), body)
}

pub async fn verify_audit<E: Engine + 'static>(
    State(console): Shared<E>,
    headers: HeaderMap,
    form: Result<Form<ReasonForm>, FormRejection>,
) -> Response {
    let csrf = form.as_ref().ok().map(|Form(form)| form.csrf.as_str());
    let signed_in = match console.actor(&headers, csrf) {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let check = console.verify_audit().await;
    let outcome = match &check.verification {
        Ok(verified) if verified.problem.is_none() => "verifies".to_string(),
        Ok(verified) => format!(
            "broken at line {}",
            verified.problem.as_ref().map_or(0, |p| p.0)
        ),
        Err(_) => "unreadable".to_string(),
    };
    console.audit(
        AuditEvent::new(
            &format!("operator:{}", signed_in.operator),
            "audit_verified",
        )
        .detail("result", outcome),
    );
    see_other("/?done=verified")
}
