//! The known mix of requests of the analytics tests, what the test expects each report to
//! return for it, and the comparison with the reports of `/admin/analytics`.
//!
//! Only requests with a token of [`PUBLIC_APP`] are counted. The fixture's own calls
//! (loading data, registering apps and users) carry the admin client or none, so the
//! reports are read with `app=app-pub`. The latency report is read at the `north` site,
//! which only the mix calls.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::support::{
    AuthRequest, Browser, ClientAuth, DOCTOR, Hearth, PATIENT_USER, PUBLIC_APP, Site, Tokens,
};

const NORTH: &str = "north";

/// Counts of one site in the usage report of [`PUBLIC_APP`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SiteCounts {
    pub calls: u64,
    pub errors: u64,
    pub launches: u64,
    pub ehr_launches: u64,
    pub denials: u64,
    pub token_grants: u64,
    pub users: BTreeSet<String>,
}

impl SiteCounts {
    /// Returns the app's FHIR calls: its calls less its token requests, one per token
    /// grant.
    pub fn fhir_calls(&self) -> u64 {
        self.calls.saturating_sub(self.token_grants)
    }
}

/// What the reports must return after the requests the mix sent so far.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    pub sites: BTreeMap<String, SiteCounts>,
    /// EHR launch contexts created with `POST /auth/launch`.
    pub ehr_contexts: u64,
    /// FHIR calls at the north site per interaction.
    pub north_interactions: BTreeMap<String, u64>,
    /// Calls of the app with response status 400 or above, per status.
    pub errors: BTreeMap<u64, u64>,
    /// (ISO day of week, hour of day) in UTC of every counted request.
    pub hours: BTreeSet<(u64, u64)>,
    /// Users per (ISO day of week, hour of day, user type) of the counted events, as the
    /// hour-of-week report counts them for one app.
    pub slot_users: BTreeMap<(u64, u64, String), BTreeSet<String>>,
}

/// Sends the mix and counts what it sent.
pub struct Mix {
    north: Site,
    pub expected: Expected,
    /// Every access and refresh token issued, which must not reach ClickHouse.
    pub secrets: Vec<String>,
}

impl Mix {
    /// Creates the `north` site and activates the public app there.
    pub fn new(hearth: &Hearth) -> Mix {
        let north = hearth.create_site(NORTH, false);
        let reply = hearth.admin_put(&format!("/admin/sites/{NORTH}/apps/{PUBLIC_APP}"));
        assert!(
            reply.status < 300,
            "activating the app at north: {}",
            reply.body
        );
        Mix {
            north,
            expected: Expected::default(),
            secrets: Vec::new(),
        }
    }

    /// Sends one round of the mix. At the default site: two standalone launches by the
    /// doctor with reads, a missing read and a search, one refresh, one EHR launch and one
    /// denial. At north: a standalone launch by the patient user with reads and a search.
    pub fn run(&mut self, hearth: &Hearth) {
        let default = hearth.default_site.clone();
        let patient = hearth.sample.patient.id.clone();
        for round in 0..2 {
            let tokens = hearth.launch(
                "launch/patient patient/*.rs offline_access",
                DOCTOR,
                Some(&patient),
            );
            self.granted(&default.id, DOCTOR, &tokens, false);
            for _ in 0..3 {
                self.fhir(
                    hearth,
                    &default,
                    (DOCTOR, &tokens),
                    &format!("Patient/{patient}"),
                    "read",
                );
            }
            self.fhir(
                hearth,
                &default,
                (DOCTOR, &tokens),
                "Patient/analytics-missing",
                "read",
            );
            let search = format!("Observation?patient={patient}");
            self.fhir(hearth, &default, (DOCTOR, &tokens), &search, "search-type");
            if round == 0 {
                let reply = hearth.refresh(
                    &ClientAuth::public(PUBLIC_APP),
                    tokens.refresh_token(),
                    None,
                );
                let refreshed = Tokens::from_response(&reply);
                self.secrets.push(refreshed.access.clone());
                self.secrets.extend(refreshed.refresh.clone());
                self.note_hour(DOCTOR);
                let counts = self.site(&default.id);
                counts.token_grants += 1;
                // The token request is a call of the app.
                counts.calls += 1;
            }
        }

        self.ehr_launch(hearth, &default, &patient);
        self.denial(hearth, &default);

        let request = AuthRequest::new(&self.north, PUBLIC_APP, "patient/*.rs");
        let code = Browser::new()
            .authorize(&request, PATIENT_USER, None)
            .code();
        let tokens = hearth.exchange(&ClientAuth::public(PUBLIC_APP), &request, &code);
        let north = self.north.clone();
        self.granted(&north.id, PATIENT_USER, &tokens, false);
        for _ in 0..2 {
            self.fhir(
                hearth,
                &north,
                (PATIENT_USER, &tokens),
                &format!("Patient/{patient}"),
                "read",
            );
        }
        let search = format!("Observation?patient={patient}");
        self.fhir(
            hearth,
            &north,
            (PATIENT_USER, &tokens),
            &search,
            "search-type",
        );
    }

    fn ehr_launch(&mut self, hearth: &Hearth, site: &Site, patient: &str) {
        let context = json!({"client_id": PUBLIC_APP, "patient": patient});
        let launch = hearth.create_launch(site, &context);
        self.expected.ehr_contexts += 1;
        let request =
            AuthRequest::new(site, PUBLIC_APP, "launch patient/*.rs").set("launch", &launch);
        let code = Browser::new().authorize(&request, DOCTOR, None).code();
        let tokens = hearth.exchange(&ClientAuth::public(PUBLIC_APP), &request, &code);
        self.granted(&site.id, DOCTOR, &tokens, true);
        let path = format!("Patient/{patient}");
        self.fhir(hearth, site, (DOCTOR, &tokens), &path, "read");
    }

    fn denial(&mut self, hearth: &Hearth, site: &Site) {
        let request = AuthRequest::new(site, PUBLIC_APP, "launch/patient patient/*.rs");
        let browser = Browser::new();
        let login = browser.start(&request);
        let mut page = browser.sign_in(&login, DOCTOR);
        if page.body.contains("name=\"patient\"") {
            page = browser.choose_patient(&page, &hearth.sample.patient.id);
        }
        let reply = browser.decide(&page, "deny");
        assert_eq!(reply.status, 302, "a denial redirects: {}", reply.body);
        assert_eq!(reply.redirect().param("error"), Some("access_denied"));
        // A denial's event names the user but not the user type.
        self.note_slot("", DOCTOR);
        let counts = self.site(&site.id);
        counts.denials += 1;
        counts.users.insert(DOCTOR.to_string());
    }

    fn granted(&mut self, site_id: &str, user: &str, tokens: &Tokens, ehr: bool) {
        self.secrets.push(tokens.access.clone());
        self.secrets.extend(tokens.refresh.clone());
        self.note_hour(user);
        let counts = self.site(site_id);
        counts.launches += 1;
        counts.ehr_launches += u64::from(ehr);
        counts.token_grants += 1;
        // The token request is a call of the app.
        counts.calls += 1;
        counts.users.insert(user.to_string());
    }

    fn fhir(
        &mut self,
        hearth: &Hearth,
        site: &Site,
        (user, tokens): (&str, &Tokens),
        path: &str,
        interaction: &str,
    ) {
        let reply = hearth.fhir_at(site, &tokens.access, path);
        self.note_hour(user);
        let status = u64::from(reply.status);
        let counts = self.site(&site.id);
        counts.calls += 1;
        if status >= 400 {
            counts.errors += 1;
            *self.expected.errors.entry(status).or_default() += 1;
        }
        if site.id == NORTH {
            *self
                .expected
                .north_interactions
                .entry(interaction.to_string())
                .or_default() += 1;
        }
    }

    fn site(&mut self, site_id: &str) -> &mut SiteCounts {
        self.expected.sites.entry(site_id.to_string()).or_default()
    }

    /// Notes an event of `user` (a fixture user) with that user's type.
    fn note_hour(&mut self, user: &str) {
        let user_type = if user == PATIENT_USER {
            "PATIENT"
        } else {
            "PRACTITIONER"
        };
        self.note_slot(user_type, user);
    }

    fn note_slot(&mut self, user_type: &str, user: &str) {
        let seconds = crate::http::now_seconds().max(0) as u64;
        let days = seconds / 86_400;
        // 1970-01-01 was a Thursday (ISO day 4).
        let day_of_week = (days + 3) % 7 + 1;
        let hour = seconds % 86_400 / 3600;
        self.expected.hours.insert((day_of_week, hour));
        self.expected
            .slot_users
            .entry((day_of_week, hour, user_type.to_string()))
            .or_default()
            .insert(user.to_string());
    }
}

/// Distinct patients in the mix's requests at a site. The default site's launches put the
/// sample patient in context. The patient user's launch at north asks for no patient
/// context (no `launch/patient` scope), so its events carry no patient.
pub fn expected_patients(site_id: &str) -> u64 {
    u64::from(site_id != NORTH)
}

fn number(row: &Value, name: &str) -> u64 {
    row[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {name} in {row}"))
}

fn get(hearth: &Hearth, path: &str) -> Result<Value, String> {
    let url = format!("{}/admin/analytics/{path}", hearth.base_url());
    let (status, body) = hearth.server.get_json(&url);
    if status != 200 {
        return Err(format!("GET {path} returned {status}: {body}"));
    }
    Ok(body)
}

/// Compares every report with `expected`; returns the first difference.
pub fn compare_reports(hearth: &Hearth, expected: &Expected) -> Result<(), String> {
    for range in usage_ranges() {
        compare_usage(hearth, expected, &range)?;
    }
    compare_latency(hearth, expected)?;
    compare_errors(hearth, expected)?;
    compare_hourly(hearth, expected)
}

/// Ranges of the usage report around the mix's requests, as query parameters. The
/// report reads whole days from `usage_daily` and the hours around them from
/// `usage_hourly`, so the ranges put the requests into each kind of part.
fn usage_ranges() -> Vec<String> {
    let now = crate::http::now_seconds();
    let hour = now - now.rem_euclid(3600);
    let tomorrow = now - now.rem_euclid(86_400) + 86_400;
    vec![
        // The default, the 7 days before now: the requests are in the hours after the
        // last midnight.
        String::new(),
        // From 30 hours ago to the next midnight: today is a whole day of the range.
        format!("&from={}&to={tomorrow}", now - 30 * 3600),
        // Five hours, with no whole day inside: only hourly rows.
        format!("&from={}&to={}", hour - 3 * 3600, hour + 2 * 3600),
    ]
}

fn compare_usage(hearth: &Hearth, expected: &Expected, range: &str) -> Result<(), String> {
    let usage = get(hearth, &format!("usage?app={PUBLIC_APP}{range}"))?;
    let rows = usage["rows"].as_array().cloned().unwrap_or_default();
    let mut found = BTreeMap::new();
    for row in &rows {
        let counts = SiteCounts {
            calls: number(row, "calls"),
            errors: number(row, "errors"),
            launches: number(row, "launches"),
            ehr_launches: number(row, "ehr_launches"),
            denials: number(row, "denials"),
            token_grants: number(row, "token_grants"),
            users: BTreeSet::new(),
        };
        let site = row["site_id"].as_str().unwrap_or_default().to_string();
        if number(row, "fhir_calls") != counts.fhir_calls() {
            return Err(format!(
                "calls are not fhir_calls plus token_grants in {row}"
            ));
        }
        let patients = expected_patients(row["site_id"].as_str().unwrap_or_default());
        if row["patients"] != json!(patients) {
            return Err(format!("expected {patients} distinct patients in {row}"));
        }
        found.insert(site, (counts, number(row, "users")));
    }
    for (site, counts) in &expected.sites {
        let Some((got, users)) = found.get(site) else {
            return Err(format!(
                "no usage row for {site} in range '{range}' yet: {usage}"
            ));
        };
        let mut without_users = counts.clone();
        without_users.users.clear();
        if *got != without_users {
            return Err(format!(
                "usage at {site} in range '{range}': expected {without_users:?}, got {got:?}"
            ));
        }
        if *users != counts.users.len() as u64 {
            return Err(format!(
                "users at {site} in range '{range}': expected {}, got {users}",
                counts.users.len()
            ));
        }
    }
    if found.len() != expected.sites.len() {
        return Err(format!("unexpected sites in {usage}"));
    }
    Ok(())
}

fn compare_latency(hearth: &Hearth, expected: &Expected) -> Result<(), String> {
    let latency = get(hearth, &format!("latency?site={NORTH}&surface=FHIR"))?;
    let mut found = BTreeMap::new();
    for row in latency["rows"].as_array().cloned().unwrap_or_default() {
        let interaction = row["interaction"].as_str().unwrap_or_default().to_string();
        let p50 = row["p50_us"].as_f64().unwrap_or(0.0);
        let p95 = row["p95_us"].as_f64().unwrap_or(0.0);
        let p99 = row["p99_us"].as_f64().unwrap_or(0.0);
        let max = row["max_us"].as_f64().unwrap_or(0.0);
        if !(0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= max) {
            return Err(format!("quantiles out of order in {row}"));
        }
        *found.entry(interaction).or_insert(0) += number(&row, "calls");
    }
    if found != expected.north_interactions {
        return Err(format!(
            "latency calls at north: expected {:?}, got {found:?}",
            expected.north_interactions
        ));
    }
    Ok(())
}

fn compare_errors(hearth: &Hearth, expected: &Expected) -> Result<(), String> {
    let errors = get(hearth, &format!("errors?app={PUBLIC_APP}"))?;
    let mut found = BTreeMap::new();
    for row in errors["rows"].as_array().cloned().unwrap_or_default() {
        *found.entry(number(&row, "status")).or_insert(0) += number(&row, "calls");
    }
    if found != expected.errors {
        return Err(format!(
            "errors: expected {:?}, got {found:?}",
            expected.errors
        ));
    }
    Ok(())
}

fn compare_hourly(hearth: &Hearth, expected: &Expected) -> Result<(), String> {
    let hourly = get(hearth, &format!("hourly?app={PUBLIC_APP}"))?;
    let rows = hourly["rows"].as_array().cloned().unwrap_or_default();
    let calls: u64 = rows.iter().map(|row| number(row, "calls")).sum();
    let launches: u64 = rows.iter().map(|row| number(row, "launches")).sum();
    let expected_calls: u64 = expected.sites.values().map(|c| c.calls).sum();
    let expected_launches: u64 = expected.sites.values().map(|c| c.launches).sum();
    if calls != expected_calls || launches != expected_launches {
        return Err(format!(
            "hourly: expected {expected_calls} calls and {expected_launches} launches, got \
             {calls} and {launches}"
        ));
    }
    for row in &rows {
        let slot = (number(row, "day_of_week"), number(row, "hour_of_day"));
        if !expected.hours.contains(&slot) {
            return Err(format!(
                "hourly row outside the hours of the requests: {row}"
            ));
        }
        // With one app selected, the report counts distinct users per slot.
        let user_type = row["user_type"].as_str().unwrap_or_default().to_string();
        let users = expected
            .slot_users
            .get(&(slot.0, slot.1, user_type))
            .map_or(0, |users| users.len() as u64);
        if row["users"] != json!(users) {
            return Err(format!("expected {users} distinct users in {row}"));
        }
    }
    Ok(())
}
