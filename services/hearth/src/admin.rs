//! `hearth apps`, `hearth sites`, `hearth users`, `hearth grants` and `hearth keys`:
//! administration through a running server's admin API, so every change is an event on
//! the log like any other. Results are printed as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the server is and how to authenticate as its administrator.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Base URL of the running Hearth server
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8080",
        env = "HEARTH_URL"
    )]
    pub url: String,
    /// Admin credential [default: the contents of DATA_DIR/admin-token]
    #[arg(
        long,
        global = true,
        env = "HEARTH_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Data directory of the server, to read its admin-token file
    #[arg(
        long,
        global = true,
        default_value = "hearth-data",
        env = "HEARTH_DATA_DIR"
    )]
    pub data_dir: PathBuf,
}

impl Connection {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(token) = &self.admin_token {
            return Ok(token.clone());
        }
        let path = self.data_dir.join("admin-token");
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .with_context(|| format!("no admin token: pass --admin-token, set HEARTH_ADMIN_TOKEN, or point --data-dir at the server's data directory ({} is not readable)", path.display()))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/admin{path}", self.url.trim_end_matches('/'));
        let mut request = reqwest::Client::new()
            .request(method, &url)
            .bearer_auth(self.token()?);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let description = value["error_description"].as_str().unwrap_or(text.as_str());
            bail!("{status}: {description}");
        }
        Ok(value)
    }
}

fn print(value: &Value) -> anyhow::Result<ExitCode> {
    if !value.is_null() {
        println!("{}", serde_json::to_string_pretty(value)?);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// Register an app (an OAuth2 client)
    Register(Box<RegisterApp>),
    /// List registered apps
    List,
    /// Show one app
    Show { client_id: String },
    /// Activate an app at a site
    Activate {
        client_id: String,
        #[arg(long, default_value = "default")]
        site: String,
    },
    /// Deactivate an app at a site
    Deactivate {
        client_id: String,
        #[arg(long, default_value = "default")]
        site: String,
    },
    /// Issue a new client secret; it is printed once
    RotateSecret { client_id: String },
    /// Disable an app and revoke its grants
    Disable { client_id: String },
    /// Enable a disabled app
    Enable { client_id: String },
}

#[derive(Args, Debug)]
pub struct RegisterApp {
    /// Display name
    #[arg(long)]
    name: String,
    /// public, confidential-symmetric or confidential-asymmetric
    #[arg(long, default_value = "public")]
    client_type: String,
    /// client_id to use [default: a new UUID]
    #[arg(long)]
    client_id: Option<String>,
    /// Redirect URI, compared exactly at authorize (repeatable)
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Space-separated scopes the app may be granted
    #[arg(long)]
    scope: String,
    /// Grant type: authorization_code, refresh_token or client_credentials (repeatable)
    #[arg(long = "grant-type")]
    grant_types: Vec<String>,
    /// client_secret_basic or client_secret_post, for confidential symmetric apps
    #[arg(long)]
    token_endpoint_auth_method: Option<String>,
    /// File with the app's JSON Web Key Set, for confidential asymmetric apps
    #[arg(long)]
    jwks_file: Option<PathBuf>,
    /// URL of the app's JSON Web Key Set
    #[arg(long)]
    jwks_url: Option<String>,
    /// URL an EHR opens to start an EHR launch
    #[arg(long)]
    launch_uri: Option<String>,
    /// Organization that builds the app
    #[arg(long)]
    vendor: Option<String>,
    /// Site to activate the app at (repeatable)
    #[arg(long = "site")]
    sites: Vec<String>,
}

pub async fn apps(connection: Connection, command: AppsCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    let value = match command {
        AppsCommand::Register(app) => {
            let jwks = match &app.jwks_file {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    Some(
                        serde_json::from_str::<Value>(&text)
                            .with_context(|| format!("{} is not JSON", path.display()))?,
                    )
                }
                None => None,
            };
            let body = json!({
                "client_id": app.client_id,
                "name": app.name,
                "client_type": app.client_type,
                "redirect_uris": app.redirect_uris,
                "scope": app.scope,
                "grant_types": (!app.grant_types.is_empty()).then_some(&app.grant_types),
                "token_endpoint_auth_method": app.token_endpoint_auth_method,
                "jwks": jwks,
                "jwks_uri": app.jwks_url,
                "launch_uri": app.launch_uri,
                "vendor": app.vendor,
                "sites": app.sites,
            });
            connection.call(Method::POST, "/apps", Some(body)).await?
        }
        AppsCommand::List => connection.call(Method::GET, "/apps", None).await?,
        AppsCommand::Show { client_id } => {
            connection
                .call(Method::GET, &format!("/apps/{client_id}"), None)
                .await?
        }
        AppsCommand::Activate { client_id, site } => {
            connection
                .call(
                    Method::PUT,
                    &format!("/sites/{site}/apps/{client_id}"),
                    None,
                )
                .await?
        }
        AppsCommand::Deactivate { client_id, site } => {
            connection
                .call(
                    Method::DELETE,
                    &format!("/sites/{site}/apps/{client_id}"),
                    None,
                )
                .await?
        }
        AppsCommand::RotateSecret { client_id } => {
            connection
                .call(Method::POST, &format!("/apps/{client_id}/secret"), None)
                .await?
        }
        AppsCommand::Disable { client_id } => {
            connection
                .call(Method::POST, &format!("/apps/{client_id}/disable"), None)
                .await?
        }
        AppsCommand::Enable { client_id } => {
            connection
                .call(Method::POST, &format!("/apps/{client_id}/enable"), None)
                .await?
        }
    };
    print(&value)
}

#[derive(Subcommand, Debug)]
pub enum SitesCommand {
    /// Create a site with its own FHIR base /sites/SITE_ID/fhir
    Create {
        site_id: String,
        #[arg(long)]
        name: String,
        /// Allow RFC 7591 dynamic client registration at this site
        #[arg(long)]
        dynamic_registration: bool,
        #[command(flatten)]
        upstream: Box<UpstreamArgs>,
    },
    /// Show one site's settings
    Get { site_id: String },
    /// Change a site's settings; settings not given keep their values
    Update {
        site_id: String,
        #[arg(long)]
        name: Option<String>,
        /// Allow (true) or forbid (false) RFC 7591 dynamic client registration
        #[arg(long)]
        dynamic_registration: Option<bool>,
        #[command(flatten)]
        upstream: Box<UpstreamArgs>,
    },
    /// List sites
    List,
    /// List the apps active at a site
    Apps { site_id: String },
}

/// Upstream EHR flags of `hearth sites create` and `hearth sites update`. On update, flags
/// not given keep their values and an empty value (`--upstream-token-url ''`) removes an
/// optional setting.
#[derive(Args, Debug)]
pub struct UpstreamArgs {
    /// FHIR base URL of the upstream EHR; on create, makes the site EHR-backed
    #[arg(long)]
    upstream: Option<String>,
    /// How Hearth authenticates at the EHR: none, bearer (token from [ehr.sites.SITE] in
    /// hearth.toml or HEARTH_EHR_BEARER_TOKEN_SITE) or backend-services
    #[arg(long)]
    upstream_auth: Option<String>,
    /// client_id of Hearth at the EHR, for backend-services
    #[arg(long)]
    upstream_client_id: Option<String>,
    /// Token endpoint of the EHR [default: from its .well-known/smart-configuration]
    #[arg(long)]
    upstream_token_url: Option<String>,
    /// Scopes Hearth requests at the EHR [default: system/*.rs]
    #[arg(long)]
    upstream_scope: Option<String>,
    /// FHIR version of the EHR, such as 4.0.1 or 3.0.2 (STU3 is converted to R4)
    #[arg(long)]
    upstream_fhir_version: Option<String>,
    /// Seconds a cached EHR response stays fresh, for types without --cache-type
    /// [default: 0, no caching]
    #[arg(long)]
    cache_seconds: Option<i64>,
    /// Freshness of one resource type, as TYPE=SECONDS (repeatable); on update, TYPE=
    /// removes the type's own value
    #[arg(long = "cache-type")]
    cache_types: Vec<String>,
}

/// Kind of request the upstream flags go into: a new site, or a JSON merge patch of one.
#[derive(Clone, Copy, PartialEq)]
enum UpstreamChange {
    Create,
    Update,
}

impl UpstreamArgs {
    /// Adds the given flags to a new site's settings or to a merge patch of them.
    fn add_to(&self, body: &mut Value, change: UpstreamChange) -> anyhow::Result<()> {
        if change == UpstreamChange::Create {
            if self.upstream.is_none() {
                return Ok(());
            }
            body["backing"] = json!("ehr");
        }
        let optional = [
            ("upstream_base_url", &self.upstream),
            ("upstream_auth_method", &self.upstream_auth),
            ("upstream_client_id", &self.upstream_client_id),
            ("upstream_token_url", &self.upstream_token_url),
            ("upstream_scope", &self.upstream_scope),
            ("upstream_fhir_version", &self.upstream_fhir_version),
        ];
        for (key, value) in optional {
            match value.as_deref() {
                Some("") if change == UpstreamChange::Update => body[key] = Value::Null,
                Some(value) => body[key] = json!(value),
                None => {}
            }
        }
        if let Some(seconds) = self.cache_seconds {
            body["default_cache_freshness_s"] = json!(seconds);
        }
        let mut per_type = serde_json::Map::new();
        for pair in &self.cache_types {
            let Some((resource_type, seconds)) = pair.split_once('=') else {
                bail!("invalid --cache-type '{pair}': expected TYPE=SECONDS, such as Patient=300");
            };
            let value = if seconds.is_empty() && change == UpstreamChange::Update {
                Value::Null
            } else {
                let seconds: i64 = seconds
                    .parse()
                    .with_context(|| format!("invalid seconds in --cache-type '{pair}'"))?;
                json!(seconds)
            };
            per_type.insert(resource_type.to_string(), value);
        }
        if !per_type.is_empty() {
            body["cache_freshness_s"] = Value::Object(per_type);
        }
        Ok(())
    }
}

pub async fn sites(connection: Connection, command: SitesCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    let value = match command {
        SitesCommand::Create {
            site_id,
            name,
            dynamic_registration,
            upstream,
        } => {
            let mut body = json!({"site_id": site_id, "name": name, "dynamic_registration": dynamic_registration});
            upstream.add_to(&mut body, UpstreamChange::Create)?;
            connection.call(Method::POST, "/sites", Some(body)).await?
        }
        SitesCommand::Get { site_id } => {
            connection
                .call(Method::GET, &format!("/sites/{site_id}"), None)
                .await?
        }
        SitesCommand::Update {
            site_id,
            name,
            dynamic_registration,
            upstream,
        } => {
            let mut patch = json!({});
            if let Some(name) = name {
                patch["name"] = json!(name);
            }
            if let Some(allowed) = dynamic_registration {
                patch["dynamic_registration"] = json!(allowed);
            }
            upstream.add_to(&mut patch, UpstreamChange::Update)?;
            if patch.as_object().is_some_and(serde_json::Map::is_empty) {
                bail!("nothing to change: give at least one setting, such as --name or --upstream");
            }
            connection
                .call(Method::PATCH, &format!("/sites/{site_id}"), Some(patch))
                .await?
        }
        SitesCommand::List => connection.call(Method::GET, "/sites", None).await?,
        SitesCommand::Apps { site_id } => {
            connection
                .call(Method::GET, &format!("/sites/{site_id}/apps"), None)
                .await?
        }
    };
    print(&value)
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Add a user who signs in to Hearth; the password is read from standard input
    Add {
        #[arg(long)]
        username: String,
        /// The user's FHIR resource, such as Practitioner/123 or Patient/456
        #[arg(long)]
        fhir_user: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// Console role: platform-admin, site-admin or app-vendor (repeatable)
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Site of a site-admin
        #[arg(long)]
        site: Option<String>,
        /// Vendor of an app-vendor
        #[arg(long)]
        vendor: Option<String>,
    },
    /// List users
    List,
    /// Disable a user: its console sessions end and it can no longer sign in
    Disable {
        /// The user id that `hearth users list` shows
        user_id: String,
    },
}

pub async fn users(connection: Connection, command: UsersCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    let value = match command {
        UsersCommand::Add {
            username,
            fhir_user,
            display_name,
            roles,
            site,
            vendor,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("cannot read the password from standard input")?;
            let body = json!({
                "username": username,
                "password": password.trim_end_matches(['\r', '\n']),
                "fhir_user": fhir_user,
                "display_name": display_name,
                "roles": roles,
                "site_id": site,
                "vendor": vendor,
            });
            connection.call(Method::POST, "/users", Some(body)).await?
        }
        UsersCommand::List => connection.call(Method::GET, "/users", None).await?,
        UsersCommand::Disable { user_id } => {
            let path = format!(
                "/users/{}/disable",
                percent_encoding::utf8_percent_encode(&user_id, percent_encoding::NON_ALPHANUMERIC)
            );
            connection.call(Method::POST, &path, None).await?
        }
    };
    print(&value)
}

#[derive(Subcommand, Debug)]
pub enum ConsoleCommand {
    /// Add a platform admin of the console; the password is read from standard input
    AddAdmin {
        #[arg(long)]
        username: String,
        #[arg(long)]
        display_name: Option<String>,
    },
}

pub async fn console(connection: Connection, command: ConsoleCommand) -> anyhow::Result<ExitCode> {
    let ConsoleCommand::AddAdmin {
        username,
        display_name,
    } = command;
    let password = read_password()?;
    let body = json!({
        "username": username,
        "password": password,
        "display_name": display_name,
        "roles": ["platform-admin"],
    });
    let value = connection
        .call(reqwest::Method::POST, "/users", Some(body))
        .await?;
    eprintln!(
        "sign in at {}/console/ as {username}",
        connection.url.trim_end_matches('/')
    );
    print(&value)
}

/// Reads a password from the first line of standard input.
fn read_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("cannot read the password from standard input")?;
    Ok(password.trim_end_matches(['\r', '\n']).to_string())
}

#[derive(Subcommand, Debug)]
pub enum GrantsCommand {
    /// List grants, newest first
    List {
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long)]
        site: Option<String>,
    },
    /// Revoke a grant and every token issued under it
    Revoke { grant_id: String },
}

pub async fn grants(connection: Connection, command: GrantsCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    let value = match command {
        GrantsCommand::List { client_id, site } => {
            let query = serde_urlencoded_pairs(&[("client_id", client_id), ("site_id", site)]);
            connection
                .call(Method::GET, &format!("/grants{query}"), None)
                .await?
        }
        GrantsCommand::Revoke { grant_id } => {
            let path = format!(
                "/grants/{}",
                percent_encoding::utf8_percent_encode(
                    &grant_id,
                    percent_encoding::NON_ALPHANUMERIC
                )
            );
            connection.call(Method::DELETE, &path, None).await?;
            let grant = connection.call(Method::GET, &path, None).await?;
            println!(
                "revoked grant {grant_id} of client {} at site {} (user {}, scope {})",
                grant["client_id"].as_str().unwrap_or("unknown"),
                grant["site_id"].as_str().unwrap_or("unknown"),
                grant["user_id"].as_str().unwrap_or("none"),
                grant["scope"].as_str().unwrap_or("")
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    print(&value)
}

fn serde_urlencoded_pairs(pairs: &[(&str, Option<String>)]) -> String {
    let present: Vec<String> = pairs
        .iter()
        .filter_map(|(name, value)| {
            value.as_ref().map(|v| {
                format!(
                    "{name}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
        })
        .collect();
    if present.is_empty() {
        String::new()
    } else {
        format!("?{}", present.join("&"))
    }
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create new signing keys; the previous ones stay published for verification
    Rotate,
}

pub async fn keys(connection: Connection, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let value = match command {
        KeysCommand::Rotate => {
            connection
                .call(reqwest::Method::POST, "/keys/rotate", None)
                .await?
        }
    };
    print(&value)
}
