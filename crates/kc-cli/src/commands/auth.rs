//! `kc login`, `kc logout`, `kc whoami`: the session at one gateway.

use std::io::Read;
use std::path::PathBuf;

use clap::{ArgGroup, Args};
use kc_proto::gateway as pb;
use serde::Serialize;

use crate::client::{Context, read_secret_file, timestamp};
use crate::commands::docs::UserDoc;
use crate::commands::sites::SiteDoc;
use crate::error::{CliError, ErrorKind, Result};
use crate::output::{self, Render, View, or_dash};
use crate::session::{Session, SessionKind};

/// Examples of `kc login`.
pub(crate) const LOGIN_EXAMPLES: &str = "\
Examples:
  kc login --email camille.martin@dupont.example
  kc login --gateway gw.example.com:50050 --email camille.martin@dupont.example
  printf '%s' \"$PASSWORD\" | kc login --email camille.martin@dupont.example --password-stdin
  kc login --client-id portal --client-secret-file ~/.keycontacts/portal.secret";

/// Arguments of `kc login`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("who").required(true).args(["email", "client_id"])))]
pub(crate) struct LoginArgs {
    /// A person's login e-mail; the password is asked for without echo.
    #[arg(long, value_name = "E")]
    email: Option<String>,
    /// Read the password from stdin (up to the first line break) instead of asking.
    #[arg(long, requires = "email")]
    password_stdin: bool,
    /// A service account's client id (`kc-identity create-service-account`).
    #[arg(long, requires = "client_secret_file", conflicts_with = "email")]
    client_id: Option<String>,
    /// The file holding the service account's secret; kc keeps its path, not the secret,
    /// and reads it again to renew the token.
    #[arg(long, value_name = "FILE", requires = "client_id")]
    client_secret_file: Option<PathBuf>,
}

/// What `kc login` and `kc whoami` print.
#[derive(Debug, Serialize)]
struct SessionDoc {
    gateway: String,
    kind: SessionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    access_token_expire_time: String,
    /// Where the tokens are kept.
    token_file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sites: Option<Vec<SiteDoc>>,
}

impl Render for SessionDoc {
    fn view(&self) -> View {
        let mut fields = vec![("gateway", self.gateway.clone())];
        match (&self.user, &self.client_id) {
            (Some(user), _) => {
                fields.push(("user", format!("{} <{}>", user.display_name, user.email)));
                fields.push(("user id", user.user_id.clone()));
                fields.push(("kind", user.kind.clone()));
            }
            (None, Some(client_id)) => {
                fields.push(("service account", client_id.clone()));
            }
            (None, None) => {}
        }
        fields.push(("token expires", or_dash(&self.access_token_expire_time)));
        fields.push(("token file", self.token_file.clone()));
        let Some(sites) = &self.sites else {
            return View::Fields(fields);
        };
        View::Sections(vec![
            (String::new(), View::Fields(fields)),
            (
                "Sites:".to_owned(),
                crate::commands::sites::sites_table(sites),
            ),
        ])
    }
}

/// `kc login`.
pub(crate) async fn login(ctx: &mut Context, args: LoginArgs) -> Result<()> {
    let (session, user) = match (&args.email, &args.client_id, &args.client_secret_file) {
        (Some(email), _, _) => {
            let password = if args.password_stdin {
                password_from_stdin()?
            } else {
                prompt_password(email)?
            };
            let (session, user) = login_user(ctx, email.clone(), password).await?;
            (session, Some(user))
        }
        (None, Some(client_id), Some(secret_file)) => {
            let secret_file = std::path::absolute(secret_file)
                .map_err(|e| CliError::other(format!("{}: {e}", secret_file.display())))?;
            let secret = read_secret_file(&secret_file)?;
            let answer = ctx.issue_service_token(client_id.clone(), secret).await?;
            let session = Session {
                kind: SessionKind::Service,
                email: None,
                user_id: None,
                client_id: Some(client_id.clone()),
                client_secret_file: Some(secret_file),
                access_token: answer.access_token,
                refresh_token: None,
                access_token_expire_time: answer
                    .access_token_expire_time
                    .as_ref()
                    .and_then(timestamp),
            };
            (session, None)
        }
        _ => {
            return Err(CliError::usage(
                "give --email, or --client-id with --client-secret-file",
            ));
        }
    };
    end_previous_session(ctx).await;
    ctx.set_session(Some(session.clone()))?;
    let doc = SessionDoc {
        gateway: ctx.gateway().to_owned(),
        kind: session.kind,
        user,
        client_id: session.client_id.clone(),
        access_token_expire_time: expiry_text(&session),
        token_file: ctx.store().path().display().to_string(),
        sites: None,
    };
    output::print(ctx.format(), &doc)
}

/// `Login`: the new session and who signed in.
async fn login_user(
    ctx: &mut Context,
    email: String,
    password: String,
) -> Result<(Session, UserDoc)> {
    let mut client = ctx.public_client().await?;
    let answer = client
        .login(pb::LoginRequest { email, password })
        .await
        .map_err(CliError::from)?
        .into_inner();
    let user = answer.user.unwrap_or_default();
    let doc = UserDoc::of(&user);
    let session = Session {
        kind: SessionKind::User,
        email: Some(user.email),
        user_id: Some(user.user_id),
        client_id: None,
        client_secret_file: None,
        access_token: answer.access_token,
        refresh_token: Some(answer.refresh_token),
        access_token_expire_time: answer.access_token_expire_time.as_ref().and_then(timestamp),
    };
    Ok((session, doc))
}

/// Ends the session being replaced by a new login at the gateway, best effort: a refresh
/// token left behind would stay valid until it expires.
async fn end_previous_session(ctx: &mut Context) {
    let Some(refresh_token) = ctx.session().and_then(|s| s.refresh_token.clone()) else {
        return;
    };
    if let Ok(mut client) = ctx.public_client().await {
        let _ = client.logout(pb::LogoutRequest { refresh_token }).await;
    }
}

fn expiry_text(session: &Session) -> String {
    session
        .access_token_expire_time
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The password on stdin, up to the first line break.
fn password_from_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CliError::other(format!("cannot read the password from stdin: {e}")))?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        return Err(CliError::usage("--password-stdin: stdin holds no password"));
    }
    Ok(password)
}

/// Asks for the password on the terminal without echo.
fn prompt_password(email: &str) -> Result<String> {
    let password = rpassword::prompt_password(format!("password for {email}: ")).map_err(|e| {
        CliError::usage(format!(
            "cannot ask for the password ({e}); use --password-stdin"
        ))
    })?;
    if password.is_empty() {
        return Err(CliError::usage("empty password"));
    }
    Ok(password)
}

/// What `kc logout` prints.
#[derive(Debug, Serialize)]
struct LogoutDoc {
    gateway: String,
    logged_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

impl Render for LogoutDoc {
    fn view(&self) -> View {
        let mut text = if self.logged_out {
            format!("logged out of {}", self.gateway)
        } else {
            format!("not logged in to {}", self.gateway)
        };
        if let Some(warning) = &self.warning {
            text.push_str(&format!(" ({warning})"));
        }
        View::Text(text)
    }
}

/// `kc logout`: ends the session at the gateway (user sessions) and removes its tokens
/// from the token file, even when the gateway cannot be reached (then it says so).
pub(crate) async fn logout(ctx: &mut Context) -> Result<()> {
    let Some(session) = ctx.session().cloned() else {
        let doc = LogoutDoc {
            gateway: ctx.gateway().to_owned(),
            logged_out: false,
            warning: None,
        };
        return output::print(ctx.format(), &doc);
    };
    let mut warning = None;
    if let Some(refresh_token) = session.refresh_token {
        let ended = match ctx.public_client().await {
            Ok(mut client) => client
                .logout(pb::LogoutRequest { refresh_token })
                .await
                .map(|_| ())
                .map_err(CliError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = ended {
            // An already ended session is what logout wants; anything else is worth saying.
            if e.kind() != ErrorKind::Unauthenticated {
                warning = Some(format!(
                    "the gateway did not end the session: {}; the tokens were removed here",
                    e.message()
                ));
            }
        }
    }
    ctx.set_session(None)?;
    if let Some(warning) = &warning {
        eprintln!("warning: {warning}");
    }
    let doc = LogoutDoc {
        gateway: ctx.gateway().to_owned(),
        logged_out: true,
        warning,
    };
    output::print(ctx.format(), &doc)
}

/// `kc whoami`: the signed-in person with its sites (GetMe), or the service account.
pub(crate) async fn whoami(ctx: &mut Context) -> Result<()> {
    let Some(session) = ctx.session().cloned() else {
        return Err(CliError::unauthenticated(format!(
            "not logged in to {} (run `kc login`)",
            ctx.gateway()
        )));
    };
    let doc = match session.kind {
        SessionKind::User => {
            let me = ctx
                .call(
                    pb::GetMeRequest {},
                    |mut c, r| async move { c.get_me(r).await },
                )
                .await?;
            let session = ctx.session().cloned().unwrap_or(session);
            SessionDoc {
                gateway: ctx.gateway().to_owned(),
                kind: session.kind,
                user: me.user.as_ref().map(UserDoc::of),
                client_id: None,
                access_token_expire_time: expiry_text(&session),
                token_file: ctx.store().path().display().to_string(),
                sites: Some(me.sites.iter().map(SiteDoc::of_mine).collect()),
            }
        }
        SessionKind::Service => SessionDoc {
            gateway: ctx.gateway().to_owned(),
            kind: session.kind,
            user: None,
            client_id: session.client_id.clone(),
            access_token_expire_time: expiry_text(&session),
            token_file: ctx.store().path().display().to_string(),
            sites: None,
        },
    };
    output::print(ctx.format(), &doc)
}
