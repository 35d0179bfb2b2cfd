//! Server-side rendering: minijinja templates embedded in the binary, HTML-escaped by default.

use axum::response::Html;
use minijinja::{Environment, Value, context};

use crate::auth::{Principal, Role};
use crate::{Console, WebError};

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates![
    "layout.html",
    "signon.html",
    "setup.html",
    "search.html",
    "message.html",
    "status.html",
    "audit.html",
    "account.html",
    "config_listeners.html",
    "config_connections.html",
    "config_login.html",
    "config_volumes.html",
    "config_certificates.html",
    "config_users.html",
    "config_tenants.html",
    "config_retention.html",
    "config_holds.html",
];

pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source).unwrap_or_else(|e| panic!("template {name}: {e}"));
    }
    env.add_filter("bytes", |n: i64| human_bytes(n));
    env.add_filter("shorten", |s: String, n: usize| {
        if s.chars().count() <= n { s } else { s.chars().take(n.saturating_sub(1)).collect::<String>() + "…" }
    });
    env.add_filter("datetime", |t: String| t.replace('T', " ").trim_end_matches('Z').to_owned());
    env.add_filter("unixtime", |t: i64| {
        coffer_archive::service::rfc3339(t).replace('T', " ").trim_end_matches('Z').to_owned()
    });
    env
}

/// Renders a page with what every page needs: the user, their role and the CSRF token.
pub fn page(console: &Console, who: Option<&Principal>, name: &str, ctx: Value) -> Result<Html<String>, WebError> {
    let template = console.templates.get_template(name).map_err(|e| WebError::Internal(e.to_string()))?;
    let me = who.map(|p| {
        context! {
            login => p.user.login, name => p.user.display_name, role => p.role.as_str(), tenant => p.tenant.name,
            auditor => p.role >= Role::Auditor, admin => p.role >= Role::Administrator,
            system_admin => p.require_system_admin().is_ok(),
            working => p.working.as_ref().map(|t| t.name.clone()),
            all_tenants => p.all_tenants,
        }
    });
    let csrf = who.and_then(|p| p.csrf.clone()).unwrap_or_default();
    template
        .render(context! { me, csrf, ..ctx })
        .map(Html)
        .map_err(|e| WebError::Internal(format!("rendering {name}: {e:#}")))
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn human_bytes(n: i64) -> String {
    let n = n as f64;
    match n {
        n if n >= (1u64 << 30) as f64 => format!("{:.1} GB", n / (1u64 << 30) as f64),
        n if n >= (1 << 20) as f64 => format!("{:.1} MB", n / (1 << 20) as f64),
        n if n >= 1024.0 => format!("{:.0} KB", n / 1024.0),
        n => format!("{n} B"),
    }
}
