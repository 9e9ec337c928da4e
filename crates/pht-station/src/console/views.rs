//! The console's HTML: one layout and the pieces every screen shares, built with `maud`, which
//! escapes every value it interpolates. Nothing here uses `PreEscaped` on anything a train, a
//! researcher or an operator supplied: train names, parameters, file names, log lines and table
//! cells all go through maud's escaping. No script, no inline style (the content security
//! policy forbids both): the console works without JavaScript.

use maud::{html, Markup, DOCTYPE};

use super::auth::SignedIn;

/// The stylesheet, served as `/static/console.css`.
pub const STYLESHEET: &str = r#"
:root { --ink: #1d2330; --muted: #5b6475; --line: #d5dae3; --ok: #17663a; --warn: #8a5a00; --bad: #a4161a; --focus: #1f5fbf; }
* { box-sizing: border-box; }
body { font: 16px/1.45 system-ui, sans-serif; color: var(--ink); margin: 0; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: .6rem 1.2rem; display: flex; gap: 1.5rem; align-items: center; flex-wrap: wrap; }
header a { color: #fff; }
header .station { font-weight: 700; }
nav ul { list-style: none; display: flex; gap: 1rem; margin: 0; padding: 0; }
nav a[aria-current="page"] { text-decoration: underline 3px; }
header form { margin-left: auto; }
main { max-width: 72rem; margin: 1.2rem auto; padding: 0 1.2rem; }
h1 { font-size: 1.5rem; margin: .2rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .6rem; }
section.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 1rem 1.2rem; margin-bottom: 1rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.flagged { background: #ffe3e3; outline: 2px solid var(--bad); font-weight: 700; }
code, pre { font-family: ui-monospace, monospace; font-size: .9em; overflow-wrap: anywhere; }
pre { background: #fff; border: 1px solid var(--line); padding: .6rem; max-height: 28rem; overflow: auto; white-space: pre-wrap; }
.verdict { display: inline-block; padding: 0 .5rem; border-radius: 1rem; font-weight: 700; font-size: .9em; }
.verdict-pass, .verdict-released, .verdict-succeeded, .verdict-ok { background: #dcf3e4; color: var(--ok); }
.verdict-review, .verdict-withheld, .verdict-awaiting_approval, .verdict-running { background: #fff1cc; color: var(--warn); }
.verdict-fail, .verdict-blocked, .verdict-refused, .verdict-rejected, .verdict-failed, .verdict-error, .verdict-broken { background: #ffe3e3; color: var(--bad); }
.flash { border-left: 4px solid var(--focus); background: #e8f0fc; padding: .6rem 1rem; margin-bottom: 1rem; }
.flash.error { border-color: var(--bad); background: #ffe3e3; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; margin: 0; }
dl.facts dt { font-weight: 600; color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
form.decide { display: flex; gap: .6rem; align-items: end; flex-wrap: wrap; margin: .6rem 0; }
form.decide label { display: flex; flex-direction: column; font-weight: 600; }
input[type=text], input[type=password], textarea { font: inherit; padding: .35rem .5rem; border: 1px solid #8a93a3; border-radius: 4px; min-width: 18rem; }
button { font: inherit; padding: .4rem .9rem; border-radius: 4px; border: 1px solid #1d2330; background: #1d2330; color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: var(--ink); }
button.danger { background: var(--bad); border-color: var(--bad); }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.muted { color: var(--muted); }
.pager { display: flex; gap: 1rem; margin: .8rem 0; }
img.figure { max-width: 100%; border: 1px solid var(--line); background: #fff; }
"#;

/// The screens in the navigation, and which one a page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Overview,
    Approvals,
    Review,
    Runs,
    Audit,
    None,
}

const NAVIGATION: [(Screen, &str, &str); 5] = [
    (Screen::Overview, "/", "Overview"),
    (Screen::Approvals, "/approvals", "Approvals"),
    (Screen::Review, "/review", "Output review"),
    (Screen::Runs, "/runs", "Runs"),
    (Screen::Audit, "/audit", "Audit log"),
];

/// A message shown at the top of a page once (after an action).
#[derive(Debug, Clone)]
pub struct Flash {
    pub text: String,
    pub error: bool,
}

/// A whole page: header with the station, navigation and the signed-in operator; `body`.
pub fn page(
    station_id: &str,
    title: &str,
    screen: Screen,
    signed_in: Option<&SignedIn>,
    flash: Option<&Flash>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — station " (station_id) }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                header {
                    span.station { "Station " (station_id) }
                    @if let Some(signed_in) = signed_in {
                        nav aria-label="Screens" {
                            ul {
                                @for (target, href, label) in NAVIGATION {
                                    li {
                                        @if target == screen {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        form method="post" action="/logout" {
                            span { "Signed in as " strong { (signed_in.operator) } " (" (role_name(signed_in.role)) ") " }
                            input type="hidden" name="csrf" value=(signed_in.csrf);
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    @if let Some(flash) = flash {
                        @if flash.error {
                            div.flash.error role="alert" { (flash.text) }
                        } @else {
                            div.flash role="status" { (flash.text) }
                        }
                    }
                    (body)
                }
            }
        }
    }
}

pub fn role_name(role: crate::operators::Role) -> &'static str {
    match role {
        crate::operators::Role::Approver => "approver",
        crate::operators::Role::Reviewer => "reviewer",
        crate::operators::Role::Admin => "admin",
    }
}

/// A verdict or status as a labelled badge (`class` from a fixed set of words, never input).
pub fn verdict(word: &str) -> Markup {
    let class = match word {
        "pass" | "released" | "succeeded" | "ok" => word,
        "review" | "withheld" | "awaiting_approval" | "running" => word,
        "fail" | "blocked" | "refused" | "rejected" | "failed" | "error" | "broken" => word,
        _ => "other",
    };
    html! { span class=(format!("verdict verdict-{class}")) { (word.replace('_', " ")) } }
}

/// A form that posts to `action` with the session's CSRF token, a reason field and a button.
pub fn decision_form(
    signed_in: &SignedIn,
    action: &str,
    button: &str,
    button_class: &str,
    reason_label: &str,
    reason_required: bool,
) -> Markup {
    let field_id = format!("reason-{}", action.replace('/', "-"));
    html! {
        form.decide method="post" action=(action) {
            input type="hidden" name="csrf" value=(signed_in.csrf);
            label for=(field_id) {
                (reason_label)
                input type="text" id=(field_id) name="reason" required[reason_required] maxlength="500";
            }
            button class=(button_class) type="submit" { (button) }
        }
    }
}

/// The sign-in page.
pub fn login(station_id: &str, login_token: &str, next: &str, problem: Option<&str>) -> Markup {
    let flash = problem.map(|text| Flash {
        text: text.to_string(),
        error: true,
    });
    page(
        station_id,
        "Sign in",
        Screen::None,
        None,
        flash.as_ref(),
        html! {
            h1 { "Sign in to the station console" }
            section.card {
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(login_token);
                    input type="hidden" name="next" value=(next);
                    p {
                        label for="name" { "Operator name" }
                        br;
                        input type="text" id="name" name="name" autocomplete="username" required autofocus;
                    }
                    p {
                        label for="password" { "Password" }
                        br;
                        input type="password" id="password" name="password" autocomplete="current-password" required;
                    }
                    button type="submit" { "Sign in" }
                }
                p.muted { "Operators are added on the station host with " code { "pht-station operators add NAME --role approver|reviewer|admin" } "." }
            }
        },
    )
}
