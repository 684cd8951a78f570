//! Load generator for the token endpoint and the FHIR API's token check, run by
//! `infra/bench/auth.sh` against a running `hearth serve`.
//!
//! Usage: `token_load URL ADMIN_TOKEN PATIENT_ID [CONCURRENCY] [CODES_PER_ROUND] [ROUNDS]`
//!
//! It registers a public app, a backend-services app with a P-384 key and a Patient user
//! through the admin API, signs in once through the login page, and then measures in turn:
//!
//! 1. authorization codes obtained through the authorize and approval pages (two
//!    requests per code, with the session cookie of that sign-in);
//! 2. `authorization_code` exchanges with PKCE, in rounds, because a code lives 60
//!    seconds: each round gets its codes first and then exchanges them all;
//! 3. `refresh_token` grants, one for each refresh token of step 2;
//! 4. `client_credentials` grants with ES384 client assertions, all signed before the
//!    timed part;
//! 5. FHIR reads of the patient with the admin credential (no token check), with one
//!    access token over and over, and with a token not seen before on every request;
//! 6. the ES256 signature check of an access token in this process, without HTTP.
//!
//! Every request is counted as a success only when it returns what the flow expects; the
//! program exits with status 1 when any request failed. With `HEARTH_PID` set to the
//! server's process id, each phase also reports the CPU time the server and this program
//! spent per request (from `/proc`, Linux only), which other jobs on the machine disturb
//! less than the rate.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hearth_smart::keys::{AccessClaims, KeyStore};
use hearth_smart::pkce::challenge_s256;
use hearth_smart::secret::generate_token;
use parking_lot::Mutex;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

/// A P-384 key made for this benchmark only, as base64 of its PKCS#8 DER encoding. The
/// backend-services app registers its public half, `KEY_X` and `KEY_Y`.
const KEY_PKCS8: &str = "\
    MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDCf427sXaOmOb3cJZM0n/yxTFheLP0Yx5cSg9Td\
    mjJsHPzJm2U8YOgIwWyVe2hmHV6hZANiAATbNJ301owqolS9lZUXh9m59uEbuXfAaCxPEXnXaRmZ69lpavGX\
    qNbgX92c9sEYEDwh8BaRrY1cHr3iaTVOz2xNd6L8QYKSnHZ0a8VQJD5c2NCuuUeWiovVfChQPEid7Vs=";
const KEY_X: &str = "2zSd9NaMKqJUvZWVF4fZufbhG7l3wGgsTxF512kZmevZaWrxl6jW4F_dnPbBGBA8";
const KEY_Y: &str = "IfAWka2NXB694mk1Ts9sTXei_EGCkpx2dGvFUCQ-XNjQrrlHloqL1XwoUDxIne1b";
const KEY_ID: &str = "bench-es384";

const REDIRECT_URI: &str = "https://app.example/cb";
const USER_SCOPE: &str = "launch/patient patient/*.rs offline_access";
const SYSTEM_SCOPE: &str = "system/*.rs";
const PASSWORD: &str = "benchmark-password";
const FORM: &str = "application/x-www-form-urlencoded";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

type Failure = String;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!(
            "usage: token_load URL ADMIN_TOKEN PATIENT_ID [CONCURRENCY] [CODES_PER_ROUND] [ROUNDS]"
        );
        std::process::exit(2);
    }
    let number = |index: usize, default: usize| {
        args.get(index).map_or(default, |text| {
            text.parse()
                .unwrap_or_else(|_| panic!("argument {text} is not a number"))
        })
    };
    let concurrency = number(3, 32);
    let codes_per_round = number(4, 10_000);
    let rounds = number(5, 3);

    let bench = Arc::new(Bench::new(&args[0], &args[1], &args[2]));
    let mut failed = 0;
    bench.register().await;
    let session = bench.sign_in().await;

    let mut exchanged = Vec::new();
    let mut exchange_stats = Vec::new();
    for round in 1..=rounds {
        let (codes, stats) = bench
            .clone()
            .phase(concurrency, codes_per_round, {
                let session = session.clone();
                move |bench, _| {
                    let session = session.clone();
                    async move { bench.authorization_code(&session).await }
                }
            })
            .await;
        stats.print(&format!("round {round} codes (authorize + approve)"));
        failed += stats.failed;
        let codes = Arc::new(codes);
        let (tokens, stats) = bench
            .clone()
            .phase(concurrency, codes.len(), move |bench, i| {
                let codes = codes.clone();
                async move { bench.exchange(&codes[i]).await }
            })
            .await;
        stats.print(&format!("round {round} authorization_code"));
        failed += stats.failed;
        exchanged.extend(tokens);
        exchange_stats.push(stats);
    }
    let total = Stats::combine(&exchange_stats);
    total.print("authorization_code, all rounds");

    let refresh_tokens = Arc::new(exchanged);
    let (refreshed, stats) = bench
        .clone()
        .phase(concurrency, refresh_tokens.len(), {
            let tokens = refresh_tokens.clone();
            move |bench, i| {
                let tokens = tokens.clone();
                async move { bench.refresh(&tokens[i].1).await }
            }
        })
        .await;
    stats.print("refresh_token");
    failed += stats.failed;

    let assertion_count = codes_per_round * rounds;
    let started = Instant::now();
    let assertions = Arc::new(bench.sign_assertions(assertion_count));
    println!(
        "signed {assertion_count} ES384 assertions in {:.2} s (not timed below)",
        started.elapsed().as_secs_f64()
    );
    let (_, stats) = bench
        .clone()
        .phase(concurrency, assertions.len(), move |bench, i| {
            let assertions = assertions.clone();
            async move { bench.client_credentials(&assertions[i]).await }
        })
        .await;
    stats.print("client_credentials (ES384 assertion)");
    failed += stats.failed;

    failed += bench
        .fhir_reads(concurrency, &refresh_tokens, refreshed)
        .await;
    measure_verification();

    if failed > 0 {
        eprintln!("{failed} requests failed");
        std::process::exit(1);
    }
}

/// The server under test and the names registered on it.
struct Bench {
    http: reqwest::Client,
    base: String,
    admin_token: String,
    patient: String,
    suffix: String,
    /// The server's process id, for its CPU time.
    server_pid: Option<String>,
}

/// The session cookie of the signed-in user.
type Session = Arc<String>;

/// An authorization code and its PKCE verifier.
type Code = (String, String);

impl Bench {
    fn new(base: &str, admin_token: &str, patient: &str) -> Bench {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1024)
            .build()
            .expect("an HTTP client");
        Bench {
            http,
            base: base.trim_end_matches('/').to_string(),
            admin_token: admin_token.to_string(),
            patient: patient.to_string(),
            suffix: generate_token(6),
            server_pid: std::env::var("HEARTH_PID").ok(),
        }
    }

    fn public_app(&self) -> String {
        format!("bench-pub-{}", self.suffix)
    }

    fn service_app(&self) -> String {
        format!("bench-svc-{}", self.suffix)
    }

    fn token_url(&self) -> String {
        format!("{}/auth/token", self.base)
    }

    /// Registers the two apps and the user through the admin API.
    async fn register(&self) {
        let apps = [
            json!({
                "client_id": self.public_app(),
                "name": "Benchmark app",
                "client_type": "public",
                "redirect_uris": [REDIRECT_URI],
                "scope": USER_SCOPE,
                "grant_types": ["authorization_code", "refresh_token"],
                "sites": ["default"],
            }),
            json!({
                "client_id": self.service_app(),
                "name": "Benchmark service",
                "client_type": "confidential-asymmetric",
                "scope": SYSTEM_SCOPE,
                "grant_types": ["client_credentials"],
                "jwks": {"keys": [{
                    "kty": "EC", "crv": "P-384", "x": KEY_X, "y": KEY_Y,
                    "kid": KEY_ID, "alg": "ES384", "use": "sig",
                }]},
                "sites": ["default"],
            }),
        ];
        for app in apps {
            self.admin_post("/admin/apps", app).await;
        }
        let user = json!({
            "username": format!("bench-{}", self.suffix),
            "password": PASSWORD,
            "fhir_user": format!("Patient/{}", self.patient),
        });
        self.admin_post("/admin/users", user).await;
    }

    async fn admin_post(&self, path: &str, body: Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_token)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path} returned {status}: {text}");
    }

    /// Builds the authorize URL for a new code; returns it with its fresh PKCE verifier.
    fn authorize_url(&self) -> (String, String) {
        let verifier = generate_token(32);
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", &self.public_app()),
            ("redirect_uri", REDIRECT_URI),
            ("scope", USER_SCOPE),
            ("state", &generate_token(8)),
            ("aud", &format!("{}/fhir", self.base)),
            ("code_challenge", &challenge_s256(&verifier)),
            ("code_challenge_method", "S256"),
        ])
        .expect("form encoding");
        (format!("{}/auth/authorize?{query}", self.base), verifier)
    }

    /// Signs in through the login page once and returns the session cookie.
    async fn sign_in(&self) -> Session {
        let (url, _) = self.authorize_url();
        let page = self.page(self.http.get(url)).await.expect("the login page");
        let body = serde_urlencoded::to_string([
            ("request", hidden_field(&page, "request").as_str()),
            ("csrf", hidden_field(&page, "csrf").as_str()),
            ("username", &format!("bench-{}", self.suffix)),
            ("password", PASSWORD),
        ])
        .expect("form encoding");
        let response = self
            .http
            .post(format!("{}/auth/authorize/login", self.base))
            .header(CONTENT_TYPE, FORM)
            .body(body)
            .send()
            .await
            .expect("the sign-in request");
        let cookie = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("hearth_session="))
            .and_then(|v| v.split(';').next())
            .unwrap_or_else(|| panic!("sign-in set no session cookie ({})", response.status()))
            .to_string();
        Arc::new(cookie)
    }

    /// Runs the authorize request and approves it, as the signed-in user's browser does.
    async fn authorization_code(&self, session: &Session) -> Result<Code, Failure> {
        let (url, verifier) = self.authorize_url();
        let page = self
            .page(self.http.get(url).header(COOKIE, session.as_str()))
            .await?;
        let body = serde_urlencoded::to_string([
            ("request", hidden_field(&page, "request").as_str()),
            ("csrf", hidden_field(&page, "csrf").as_str()),
            ("decision", "approve"),
        ])
        .expect("form encoding");
        let response = self
            .http
            .post(format!("{}/auth/authorize/decision", self.base))
            .header(CONTENT_TYPE, FORM)
            .header(COOKIE, session.as_str())
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                format!(
                    "the approval returned {} and no redirect",
                    response.status()
                )
            })?;
        let url = url::Url::parse(location).map_err(|e| e.to_string())?;
        let code = url
            .query_pairs()
            .find(|(name, _)| name == "code")
            .map(|(_, value)| value.into_owned())
            .ok_or_else(|| format!("the redirect has no code: {location}"))?;
        Ok((code, verifier))
    }

    /// Reads an HTML page that must come with status 200.
    async fn page(&self, request: reqwest::RequestBuilder) -> Result<String, Failure> {
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("the page returned {status}"));
        }
        Ok(text)
    }

    /// Exchanges a code; returns the access token and the refresh token.
    async fn exchange(&self, (code, verifier): &Code) -> Result<(String, String), Failure> {
        let body = serde_urlencoded::to_string([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", &self.public_app()),
            ("code_verifier", verifier),
        ])
        .expect("form encoding");
        let tokens = self.token_request(body).await?;
        let refresh = tokens["refresh_token"]
            .as_str()
            .ok_or("the token response has no refresh_token")?;
        Ok((access_token(&tokens)?, refresh.to_string()))
    }

    /// Refreshes once; returns the new access token.
    async fn refresh(&self, refresh_token: &str) -> Result<String, Failure> {
        let body = serde_urlencoded::to_string([
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &self.public_app()),
        ])
        .expect("form encoding");
        access_token(&self.token_request(body).await?)
    }

    async fn client_credentials(&self, assertion: &str) -> Result<String, Failure> {
        let body = serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("scope", SYSTEM_SCOPE),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ])
        .expect("form encoding");
        access_token(&self.token_request(body).await?)
    }

    async fn token_request(&self, body: String) -> Result<Value, Failure> {
        let response = self
            .http
            .post(self.token_url())
            .header(CONTENT_TYPE, FORM)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("the token endpoint returned {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    /// Signs `count` client assertions on every core.
    fn sign_assertions(&self, count: usize) -> Vec<String> {
        let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, KEY_PKCS8)
            .expect("the benchmark key is base64");
        let key = jsonwebtoken::EncodingKey::from_ec_der(&der);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        header.kid = Some(KEY_ID.to_string());
        let client_id = self.service_app();
        let audience = self.token_url();
        // Four minutes leaves time to send them all within the five minutes allowed.
        let expires = hearth_auth::now_micros() / 1_000_000 + 240;
        let sign = |_| {
            let claims = json!({
                "iss": client_id, "sub": client_id, "aud": audience,
                "exp": expires, "jti": generate_token(16),
            });
            jsonwebtoken::encode(&header, &claims, &key).expect("signing an assertion")
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let share = count / threads + usize::from(t < count % threads);
                    scope.spawn(move || (0..share).map(sign).collect::<Vec<_>>())
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a signing thread"))
                .collect()
        })
    }

    /// Reads the patient with the admin credential, with one token throughout and with a
    /// token not seen before on each request. Returns the number of failed requests.
    async fn fhir_reads(
        self: &Arc<Self>,
        concurrency: usize,
        first_tokens: &[(String, String)],
        fresh_tokens: Vec<String>,
    ) -> usize {
        let count = fresh_tokens.len();
        let runs = [
            (
                "FHIR read, admin credential (no token check)",
                vec![self.admin_token.clone()],
            ),
            (
                "FHIR read, one access token (cached signature)",
                vec![first_tokens[0].0.clone()],
            ),
            ("FHIR read, new access token each request", fresh_tokens),
        ];
        let mut failed = 0;
        for (name, tokens) in runs {
            let tokens = Arc::new(tokens);
            let (_, stats) = self
                .clone()
                .phase(concurrency, count, move |bench, i| {
                    let tokens = tokens.clone();
                    async move { bench.read_patient(&tokens[i % tokens.len()]).await }
                })
                .await;
            stats.print(name);
            failed += stats.failed;
        }
        failed
    }

    async fn read_patient(&self, token: &str) -> Result<(), Failure> {
        let response = self
            .http
            .get(format!("{}/fhir/Patient/{}", self.base, self.patient))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        response.bytes().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("the read returned {status}"));
        }
        Ok(())
    }

    /// CPU seconds used so far by the server (when its pid is known) and by this process.
    fn cpu_seconds(&self) -> (Option<f64>, Option<f64>) {
        let server = self.server_pid.as_deref().and_then(process_cpu_seconds);
        (server, process_cpu_seconds("self"))
    }

    /// Runs `count` requests, `concurrency` at a time, and returns the successful results
    /// with the phase's figures.
    async fn phase<R, F, Fut>(
        self: Arc<Self>,
        concurrency: usize,
        count: usize,
        request: F,
    ) -> (Vec<R>, Stats)
    where
        R: Send + 'static,
        F: Fn(Arc<Bench>, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Failure>> + Send,
    {
        let next = Arc::new(AtomicUsize::new(0));
        let request = Arc::new(request);
        let results = Arc::new(Mutex::new(Vec::with_capacity(count)));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(count)));

        let cpu_before = self.cpu_seconds();
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (next, request, bench) = (next.clone(), request.clone(), self.clone());
                let (results, failures) = (results.clone(), failures.clone());
                let latencies = latencies.clone();
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let sent = Instant::now();
                        let outcome = request(bench.clone(), i).await;
                        latencies.lock().push(sent.elapsed());
                        match outcome {
                            Ok(result) => results.lock().push(result),
                            Err(failure) => failures.lock().push(failure),
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("a load worker");
        }
        let elapsed = started.elapsed();
        let cpu_after = self.cpu_seconds();

        let failures = std::mem::take(&mut *failures.lock());
        if let Some(first) = failures.first() {
            eprintln!("{} requests failed; the first: {first}", failures.len());
        }
        let mut latencies = std::mem::take(&mut *latencies.lock());
        latencies.sort();
        let results = std::mem::take(&mut *results.lock());
        let stats = Stats {
            succeeded: results.len(),
            failed: failures.len(),
            elapsed,
            latencies,
            server_cpu: cpu_after.0.zip(cpu_before.0).map(|(a, b)| a - b),
            own_cpu: cpu_after.1.zip(cpu_before.1).map(|(a, b)| a - b),
        };
        (results, stats)
    }
}

fn access_token(tokens: &Value) -> Result<String, Failure> {
    tokens["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "the token response has no access_token".to_string())
}

/// Returns the value of a hidden form field of a flow page.
fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    html.split_once(&marker)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(value, _)| value.to_string())
        .unwrap_or_default()
}

/// User plus system CPU seconds of a process, from `/proc/PID/stat` (fields 14 and 15,
/// in clock ticks of 1/100 s, which is `USER_HZ` on x86 and arm64 Linux).
fn process_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Figures of one phase.
struct Stats {
    succeeded: usize,
    failed: usize,
    elapsed: Duration,
    /// Latency of every request, sorted.
    latencies: Vec<Duration>,
    /// CPU seconds the server used during the phase, when its pid is known.
    server_cpu: Option<f64>,
    /// CPU seconds this program used during the phase.
    own_cpu: Option<f64>,
}

impl Stats {
    fn combine(all: &[Stats]) -> Stats {
        let mut latencies: Vec<Duration> = all
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        latencies.sort();
        Stats {
            succeeded: all.iter().map(|s| s.succeeded).sum(),
            failed: all.iter().map(|s| s.failed).sum(),
            elapsed: all.iter().map(|s| s.elapsed).sum(),
            latencies,
            server_cpu: all.iter().map(|s| s.server_cpu).sum(),
            own_cpu: all.iter().map(|s| s.own_cpu).sum(),
        }
    }

    fn percentile(&self, fraction: f64) -> f64 {
        let Some(last) = self.latencies.len().checked_sub(1) else {
            return 0.0;
        };
        let index = ((last as f64) * fraction).round() as usize;
        self.latencies[index].as_secs_f64() * 1000.0
    }

    fn print(&self, name: &str) {
        let seconds = self.elapsed.as_secs_f64();
        let requests = (self.succeeded + self.failed).max(1) as f64;
        let per_request = |cpu: Option<f64>| {
            cpu.map_or("-".to_string(), |c| format!("{:.0}", c * 1e6 / requests))
        };
        println!(
            "{name}: {} ok, {} failed in {seconds:.2} s = {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, \
             CPU us/request: server {}, load generator {}",
            self.succeeded,
            self.failed,
            self.succeeded as f64 / seconds,
            self.percentile(0.5),
            self.percentile(0.99),
            per_request(self.server_cpu),
            per_request(self.own_cpu),
        );
    }
}

/// Times the ES256 signature check of access tokens in this process.
fn measure_verification() {
    let dir = tempfile::tempdir().expect("a temporary key directory");
    let keys = KeyStore::open_or_create(dir.path()).expect("a key store");
    let count = 2000;
    let tokens: Vec<String> = (0..count)
        .map(|i| {
            let claims = AccessClaims {
                iss: "http://127.0.0.1/auth".to_string(),
                sub: "user".to_string(),
                aud: "http://127.0.0.1/fhir".to_string(),
                exp: hearth_auth::now_micros() / 1_000_000 + 600,
                iat: hearth_auth::now_micros() / 1_000_000,
                jti: format!("token-{i}"),
                client_id: "app".to_string(),
                scope: USER_SCOPE.to_string(),
                gid: Some("grant".to_string()),
                site: "default".to_string(),
                patient: Some("patient".to_string()),
                encounter: None,
                fhir_user: None,
                user_type: Some("Patient".to_string()),
            };
            keys.sign_access_token(&claims).expect("signing")
        })
        .collect();
    let started = Instant::now();
    for token in &tokens {
        keys.verify_access_token::<AccessClaims>(
            token,
            "http://127.0.0.1/auth",
            "http://127.0.0.1/fhir",
        )
        .expect("a valid token");
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / count as f64;
    println!("ES256 access token check in process: {micros:.0} us per token, one thread");
}
