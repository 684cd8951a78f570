use proptest::prelude::*;

use super::*;

fn resource(token: &str) -> ResourceScope {
    match parse(token).scopes() {
        [Scope::Resource(scope)] => scope.clone(),
        other => panic!("`{token}` did not parse to one resource scope: {other:?}"),
    }
}

fn rejection(token: &str) -> ScopeError {
    let set = parse(token);
    assert!(set.is_empty(), "`{token}` was accepted: {set:?}");
    match set.rejected() {
        [rejected] => rejected.reason.clone(),
        other => panic!("`{token}` gave {other:?}"),
    }
}

#[test]
fn parse_launch_request() {
    let set = parse("launch/patient patient/*.read offline_access");

    assert!(set.rejected().is_empty());
    assert_eq!(set.len(), 3);
    assert_eq!(set.scopes()[0], Scope::LaunchPatient);
    assert_eq!(set.scopes()[2], Scope::OfflineAccess);
    assert_eq!(
        set.to_string(),
        "launch/patient patient/*.read offline_access"
    );
}

#[test]
fn parse_simple_scopes() {
    let set = parse(
        "launch launch/patient launch/encounter openid fhirUser profile offline_access \
         online_access",
    );

    assert_eq!(
        set.scopes(),
        &[
            Scope::Launch,
            Scope::LaunchPatient,
            Scope::LaunchEncounter,
            Scope::OpenId,
            Scope::FhirUser,
            Scope::Profile,
            Scope::OfflineAccess,
            Scope::OnlineAccess,
        ]
    );
}

#[test]
fn parse_v2_resource_scope() {
    let scope = resource("patient/Observation.rs");

    assert_eq!(scope.context, Context::Patient);
    assert_eq!(scope.resource_type.as_deref(), Some("Observation"));
    assert_eq!(scope.permissions, Permissions::READ | Permissions::SEARCH);
    assert_eq!(scope.version, ScopeVersion::V2);
    assert!(scope.query.is_empty());
    assert_eq!(scope.text, "patient/Observation.rs");
}

#[test]
fn parse_wildcards_and_contexts() {
    let user = resource("user/*.cruds");
    let system = resource("system/Patient.c");

    assert_eq!(user.context, Context::User);
    assert_eq!(user.resource_type, None);
    assert_eq!(user.permissions, Permissions::ALL);
    assert_eq!(system.context, Context::System);
    assert_eq!(system.permissions, Permissions::CREATE);
}

#[test]
fn v1_maps_to_v2() {
    let cases = [
        ("patient/*.read", "patient/*.rs"),
        ("user/Observation.write", "user/Observation.cud"),
        ("system/*.*", "system/*.cruds"),
    ];

    for (v1, v2) in cases {
        let old = resource(v1);
        let new = resource(v2);
        assert_eq!(old.version, ScopeVersion::V1, "{v1}");
        assert_eq!(old.permissions, new.permissions, "{v1}");
        assert_eq!(old.to_v2_text(), v2, "{v1}");
        assert_eq!(old.text, v1, "{v1}");
    }
}

#[test]
fn v2_permission_letters() {
    for accepted in ["c", "r", "u", "d", "s", "rs", "cud", "cruds", "cs", "ruds"] {
        let scope = resource(&format!("patient/Observation.{accepted}"));
        assert_eq!(scope.permissions.letters(), accepted);
    }

    for rejected in ["", "rx", "sr", "rr", "search", "dus ", "R", "crudss", "x"] {
        let token = format!("patient/Observation.{rejected}");
        let set = parse(&token);
        assert!(set.is_empty(), "`{token}` was accepted");
    }
}

#[test]
fn invalid_permissions_are_rejected() {
    assert_eq!(
        rejection("patient/*.search"),
        ScopeError::InvalidPermissions("search".to_string())
    );
    assert_eq!(
        rejection("patient/Observation.rx"),
        ScopeError::InvalidPermissions("rx".to_string())
    );
    assert_eq!(
        rejection("patient/Observation"),
        ScopeError::MissingPermissions
    );
}

#[test]
fn rejected_tokens_never_partly_honoured() {
    let set = parse("patient/*.rs patient/*.search patient/Observation.rx user/*.cruds");

    assert_eq!(set.to_string(), "patient/*.rs user/*.cruds");
    let rejected: Vec<&str> = set.rejected().iter().map(|r| r.text.as_str()).collect();
    assert_eq!(rejected, ["patient/*.search", "patient/Observation.rx"]);
}

#[test]
fn resource_type_must_be_r4() {
    assert_eq!(
        rejection("patient/Observations.rs"),
        ScopeError::UnknownResourceType("Observations".to_string())
    );
    assert_eq!(
        rejection("patient/observation.rs"),
        ScopeError::UnknownResourceType("observation".to_string())
    );
    assert_eq!(
        rejection("patient/Resource.rs"),
        ScopeError::UnknownResourceType("Resource".to_string())
    );
    assert_eq!(
        rejection("patient/.rs"),
        ScopeError::UnknownResourceType(String::new())
    );
}

#[test]
fn context_case_is_checked() {
    assert_eq!(
        rejection("Patient/*.rs"),
        ScopeError::UnknownContext("Patient".to_string())
    );
    assert_eq!(
        rejection("USER/*.rs"),
        ScopeError::UnknownContext("USER".to_string())
    );
    assert_eq!(
        rejection("Launch/patient"),
        ScopeError::UnknownContext("Launch".to_string())
    );
}

#[test]
fn query_is_parsed_and_decoded() {
    let scope = resource(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/\
         observation-category|laboratory&code%3Ain=http%3A%2F%2Fexample.org",
    );

    assert_eq!(
        scope.query,
        vec![
            (
                "category".to_string(),
                "http://terminology.hl7.org/CodeSystem/observation-category|laboratory".to_string()
            ),
            ("code:in".to_string(), "http://example.org".to_string()),
        ]
    );
}

#[test]
fn query_plus_sign_is_literal() {
    let scope = resource("patient/Observation.rs?value-quantity=5e+1");

    assert_eq!(scope.query[0].1, "5e+1");
}

#[test]
fn malformed_queries_are_rejected() {
    for token in [
        "patient/Observation.rs?",
        "patient/Observation.rs?category",
        "patient/Observation.rs?=laboratory",
        "patient/Observation.rs?category=",
        "patient/Observation.rs?a=1&&b=2",
        "patient/Observation.rs?a=1&",
        "patient/Observation.rs?a=%zz",
        "patient/Observation.rs?a=%4",
        "patient/Observation.rs?a=%ff",
    ] {
        assert!(
            matches!(rejection(token), ScopeError::InvalidQuery(_)),
            "{token}"
        );
    }
}

#[test]
fn v1_scope_with_query_is_rejected() {
    assert_eq!(
        rejection("patient/Observation.read?category=laboratory"),
        ScopeError::QueryOnV1Scope
    );
}

#[test]
fn launch_resource_context() {
    let set = parse("launch/imagingstudy");

    assert_eq!(
        set.scopes(),
        &[Scope::LaunchResource {
            resource_type: "ImagingStudy",
            text: "launch/imagingstudy".to_string()
        }]
    );
    assert_eq!(set.to_string(), "launch/imagingstudy");
    assert_eq!(
        rejection("launch/ImagingStudy"),
        ScopeError::UnknownLaunchContext("ImagingStudy".to_string())
    );
    assert_eq!(
        rejection("launch/nothing"),
        ScopeError::UnknownLaunchContext("nothing".to_string())
    );
    assert_eq!(
        rejection("launch/"),
        ScopeError::UnknownLaunchContext(String::new())
    );
}

#[test]
fn other_scopes_are_kept() {
    let set = parse("__profilePhoto.manage https://ehr.example.org/scopes/x.manage fhiruser");

    assert_eq!(
        set.scopes(),
        &[
            Scope::Other("__profilePhoto.manage".to_string()),
            Scope::Other("https://ehr.example.org/scopes/x.manage".to_string()),
            Scope::Other("fhiruser".to_string()),
        ]
    );
}

#[test]
fn invalid_characters_are_rejected() {
    for token in ["patient/*.rs\"", "a\\b", "caf\u{e9}", "tab\there"] {
        assert_eq!(rejection(token), ScopeError::InvalidCharacter, "{token:?}");
    }
}

#[test]
fn spaces_and_duplicates() {
    let set = parse("  openid   openid patient/*.rs patient/*.rs  ");

    assert_eq!(set.to_string(), "openid patient/*.rs");
    assert_eq!(parse("").to_string(), "");
    assert!(parse("   ").is_empty());
}

#[test]
fn equal_meaning_different_text_both_kept() {
    // The granted string repeats what was requested, so both spellings stay.
    let set = parse("patient/*.read patient/*.rs");

    assert_eq!(set.to_string(), "patient/*.read patient/*.rs");
}

#[test]
fn narrow_by_wildcard() {
    let requested = parse("patient/Observation.rs patient/*.rs launch/patient openid");
    let allowed = parse("patient/*.cruds launch/patient");

    assert_eq!(
        requested.narrow(&allowed).to_string(),
        "patient/Observation.rs patient/*.rs launch/patient"
    );
}

#[test]
fn narrow_type_does_not_cover_wildcard() {
    let requested = parse("patient/*.rs");
    let allowed = parse("patient/Observation.rs");

    assert!(requested.narrow(&allowed).is_empty());
    assert!(!requested.is_subset_of(&allowed));
}

#[test]
fn narrow_permissions_and_context() {
    let allowed = parse("patient/*.rs user/Observation.r");

    assert!(parse("patient/Observation.r").is_subset_of(&allowed));
    assert!(!parse("patient/Observation.cruds").is_subset_of(&allowed));
    assert!(!parse("user/Observation.rs").is_subset_of(&allowed));
    assert!(!parse("system/Observation.r").is_subset_of(&allowed));
    assert!(parse("patient/Observation.read").is_subset_of(&allowed));
}

#[test]
fn narrow_combines_allowed_permissions() {
    let allowed = parse("patient/Observation.r patient/Observation.s");

    assert!(parse("patient/Observation.rs").is_subset_of(&allowed));
    assert!(!parse("patient/Observation.rds").is_subset_of(&allowed));
}

#[test]
fn narrow_queries() {
    let lab = "patient/Observation.rs?category=laboratory";
    let unrestricted = parse("patient/Observation.rs");
    let same = parse(lab);
    let other = parse("patient/Observation.rs?category=vital-signs");

    assert!(parse(lab).is_subset_of(&unrestricted));
    assert!(parse(lab).is_subset_of(&same));
    assert!(!parse(lab).is_subset_of(&other));
    assert!(!unrestricted.is_subset_of(&same));
    assert!(parse("patient/Observation.rs?category=laboratory&status=final").is_subset_of(&same));
    assert!(parse("patient/Observation.rs?status=final&category=laboratory").is_subset_of(&same));
}

#[test]
fn narrow_keeps_rejected_of_self() {
    let requested = parse("patient/*.rs patient/*.bad");
    let narrowed = requested.narrow(&parse("patient/*.rs"));

    assert_eq!(narrowed.to_string(), "patient/*.rs");
    assert_eq!(narrowed.rejected().len(), 1);
}

#[test]
fn refresh_wider_scope_is_not_subset() {
    let granted = parse("launch/patient patient/*.rs offline_access");

    assert!(parse("patient/*.rs").is_subset_of(&granted));
    assert!(parse("patient/Observation.rs offline_access").is_subset_of(&granted));
    assert!(!parse("patient/*.cruds").is_subset_of(&granted));
    assert!(!parse("user/*.rs").is_subset_of(&granted));
    assert!(!parse("patient/*.rs openid").is_subset_of(&granted));
    assert!(parse("").is_subset_of(&granted));
}

#[test]
fn access_denied_without_scope() {
    let set = parse("patient/Observation.rs launch/patient");
    let all = [Context::Patient, Context::User, Context::System];

    assert_eq!(
        set.access(&all, "Condition", Interaction::Read),
        Access::Denied
    );
    assert_eq!(
        set.access(&all, "Observation", Interaction::Create),
        Access::Denied
    );
    assert!(
        !set.access(&all, "Observation", Interaction::Delete)
            .is_allowed()
    );
}

#[test]
fn access_patient_scope_needs_compartment() {
    let set = parse("patient/*.rs");
    let access = set.access(&[Context::Patient], "Observation", Interaction::Search);

    assert!(access.is_allowed());
    assert!(access.needs_patient_compartment());
    assert!(!access.is_unrestricted());
    assert_eq!(access.restrictions(), vec![&[] as &[(String, String)]]);
}

#[test]
fn access_user_scope_without_patient() {
    let set = parse("user/Observation.rs");
    let access = set.access(
        &[Context::User, Context::System],
        "Observation",
        Interaction::Search,
    );

    assert!(access.is_allowed());
    assert!(!access.needs_patient_compartment());
    assert!(access.is_unrestricted());
}

#[test]
fn access_ignores_contexts_not_allowed() {
    let set = parse("patient/*.rs");

    let access = set.access(
        &[Context::User, Context::System],
        "Observation",
        Interaction::Read,
    );
    assert_eq!(access, Access::Denied);
    assert!(!access.needs_patient_compartment());
}

#[test]
fn access_query_restrictions_or_together() {
    let set = parse(
        "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs",
    );
    let access = set.access(&[Context::Patient], "Observation", Interaction::Search);

    let Access::Allowed { filters } = &access else {
        panic!("expected access, got {access:?}");
    };
    assert_eq!(filters.len(), 2);
    assert_eq!(
        filters[0].query,
        [("category".to_string(), "laboratory".to_string())]
    );
    assert_eq!(
        filters[1].query,
        [("category".to_string(), "vital-signs".to_string())]
    );
    assert!(access.needs_patient_compartment());
}

#[test]
fn access_unrestricted_grant_absorbs_restricted() {
    let set = parse("patient/Observation.rs?category=laboratory patient/*.rs patient/*.read");
    let access = set.access(&[Context::Patient], "Observation", Interaction::Read);

    assert_eq!(
        access,
        Access::Allowed {
            filters: vec![Grant {
                context: Context::Patient,
                query: Vec::new()
            }]
        }
    );
}

#[test]
fn access_mixed_contexts() {
    let set = parse("patient/*.rs user/Observation.rs?category=laboratory");
    let all = [Context::Patient, Context::User];
    let access = set.access(&all, "Observation", Interaction::Read);

    assert_eq!(access.grants().len(), 2);
    assert!(!access.needs_patient_compartment());
    assert!(!access.is_unrestricted());

    let patient_only = set.access(&all, "Condition", Interaction::Read);
    assert!(patient_only.needs_patient_compartment());
}

#[test]
fn access_interactions_map_to_letters() {
    let set = parse("system/*.cud");
    let system = [Context::System];

    assert!(
        set.access(&system, "Patient", Interaction::Create)
            .is_allowed()
    );
    assert!(
        set.access(&system, "Patient", Interaction::Update)
            .is_allowed()
    );
    assert!(
        set.access(&system, "Patient", Interaction::Delete)
            .is_allowed()
    );
    assert!(
        !set.access(&system, "Patient", Interaction::Read)
            .is_allowed()
    );
    assert!(
        !set.access(&system, "Patient", Interaction::Search)
            .is_allowed()
    );
}

#[test]
fn describe_resource_scopes() {
    let cases = [
        (
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/\
             observation-category|laboratory",
            "Read and search Observation records of the selected patient, only where \
             category is laboratory",
        ),
        (
            "user/*.cruds",
            "Create, read, update, delete and search all records you have access to",
        ),
        (
            "patient/*.read",
            "Read and search all records of the selected patient",
        ),
        (
            "system/Patient.c",
            "Create Patient records this app is allowed to use",
        ),
        (
            "user/Observation.s?category=laboratory&status=final",
            "Search Observation records you have access to, only where category is \
             laboratory and status is final",
        ),
    ];

    for (token, expected) in cases {
        let set = parse(token);
        assert_eq!(set.scopes()[0].describe(), expected, "{token}");
    }
}

#[test]
fn describe_other_scopes() {
    let set = parse("launch launch/patient openid fhirUser offline_access __x launch/imagingstudy");

    for scope in set.iter() {
        let text = scope.describe();
        assert!(!text.is_empty(), "{scope}");
        assert!(
            text.chars().next().is_some_and(char::is_uppercase),
            "{scope}: {text}"
        );
    }
    assert_eq!(
        set.scopes()[5].describe(),
        "Use the additional permission `__x`"
    );
    assert_eq!(
        set.scopes()[6].describe(),
        "Ask for a resource of type ImagingStudy to be selected when it starts"
    );
}

#[test]
fn needs_patient_context() {
    assert!(parse("patient/Observation.rs").needs_patient_context());
    assert!(!parse("user/*.rs launch/patient").needs_patient_context());
}

// Strategies for proptest: tokens built from the grammar's parts, plus noise.

fn context_text() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("patient"), Just("user"), Just("system")]
}

fn type_text() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("*"),
        Just("Observation"),
        Just("Patient"),
        Just("Condition"),
        Just("MedicationRequest"),
    ]
}

fn v2_letters() -> impl Strategy<Value = String> {
    (1u8..32).prop_map(|bits| {
        "cruds"
            .chars()
            .enumerate()
            .filter(|(index, _)| bits & (1 << index) != 0)
            .map(|(_, letter)| letter)
            .collect()
    })
}

fn query_text() -> impl Strategy<Value = String> {
    let pair = (
        prop_oneof![
            Just("category"),
            Just("code"),
            Just("status"),
            Just("code%3Ain")
        ],
        prop_oneof![
            Just("laboratory"),
            Just("final"),
            Just("a%7Cb"),
            Just("x+y")
        ],
    )
        .prop_map(|(name, value)| format!("{name}={value}"));
    proptest::collection::vec(pair, 1..3).prop_map(|pairs| pairs.join("&"))
}

fn resource_token() -> impl Strategy<Value = String> {
    let v1 = (
        context_text(),
        type_text(),
        prop_oneof![Just("read"), Just("write"), Just("*")],
    )
        .prop_map(|(context, kind, permission)| format!("{context}/{kind}.{permission}"));
    let v2 = (
        context_text(),
        type_text(),
        v2_letters(),
        proptest::option::of(query_text()),
    )
        .prop_map(|(context, kind, letters, query)| match query {
            Some(query) => format!("{context}/{kind}.{letters}?{query}"),
            None => format!("{context}/{kind}.{letters}"),
        });
    prop_oneof![v1, v2]
}

fn valid_token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => resource_token(),
        1 => prop_oneof![
            Just("launch"),
            Just("launch/patient"),
            Just("launch/encounter"),
            Just("launch/imagingstudy"),
            Just("openid"),
            Just("fhirUser"),
            Just("profile"),
            Just("offline_access"),
            Just("online_access"),
            Just("__custom.scope"),
        ]
        .prop_map(str::to_string),
    ]
}

fn valid_scope_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(valid_token(), 0..8).prop_map(|tokens| tokens.join(" "))
}

proptest! {
    #[test]
    fn parse_never_panics(input in any::<String>()) {
        let set = parse(&input);
        let _ = set.to_string();
        for scope in set.iter() {
            let _ = scope.describe();
        }
    }

    #[test]
    fn parse_never_panics_on_scope_like_text(input in "[a-zA-Z/*.?=&%|:0-9 _-]{0,60}") {
        let set = parse(&input);
        let reparsed = parse(&set.to_string());
        prop_assert!(reparsed.rejected().is_empty());
        prop_assert_eq!(reparsed.scopes(), set.scopes());
    }

    #[test]
    fn valid_tokens_are_accepted(input in valid_scope_string()) {
        let set = parse(&input);
        prop_assert!(set.rejected().is_empty(), "{:?}", set.rejected());
    }

    #[test]
    fn round_trip_through_string(input in valid_scope_string()) {
        let set = parse(&input);
        prop_assert_eq!(parse(&set.to_string()), set);
    }

    #[test]
    fn v1_and_v2_grant_the_same(
        context in context_text(),
        kind in type_text(),
        pair in prop_oneof![
            Just(("read", "rs")),
            Just(("write", "cud")),
            Just(("*", "cruds")),
        ],
    ) {
        let v1 = parse(&format!("{context}/{kind}.{}", pair.0));
        let v2 = parse(&format!("{context}/{kind}.{}", pair.1));
        let all = [Context::Patient, Context::User, Context::System];

        prop_assert!(v1.is_subset_of(&v2));
        prop_assert!(v2.is_subset_of(&v1));
        for interaction in [
            Interaction::Create,
            Interaction::Read,
            Interaction::Update,
            Interaction::Delete,
            Interaction::Search,
        ] {
            prop_assert_eq!(
                v1.access(&all, "Observation", interaction),
                v2.access(&all, "Observation", interaction)
            );
        }
    }

    #[test]
    fn narrow_with_self_is_identity(input in valid_scope_string()) {
        let set = parse(&input);
        prop_assert_eq!(set.narrow(&set), set.clone());
        prop_assert!(set.is_subset_of(&set));
    }

    #[test]
    fn narrow_is_subset_of_both(a in valid_scope_string(), b in valid_scope_string()) {
        let requested = parse(&a);
        let allowed = parse(&b);
        let narrowed = requested.narrow(&allowed);

        prop_assert!(narrowed.is_subset_of(&requested));
        prop_assert!(narrowed.is_subset_of(&allowed));
        prop_assert!(narrowed.len() <= requested.len());
        prop_assert_eq!(narrowed.narrow(&allowed), narrowed.clone());
    }

    #[test]
    fn subset_agrees_with_narrow(a in valid_scope_string(), b in valid_scope_string()) {
        let requested = parse(&a);
        let allowed = parse(&b);

        prop_assert_eq!(
            requested.is_subset_of(&allowed),
            requested.narrow(&allowed).len() == requested.len()
        );
    }

    #[test]
    fn narrowing_never_widens_access(
        a in valid_scope_string(),
        b in valid_scope_string(),
        kind in type_text(),
    ) {
        let narrowed = parse(&a).narrow(&parse(&b));
        let allowed = parse(&b);
        let all = [Context::Patient, Context::User, Context::System];
        let resource_type = if kind == "*" { "Observation" } else { kind };

        for interaction in [Interaction::Read, Interaction::Search, Interaction::Create] {
            if narrowed.access(&all, resource_type, interaction).is_allowed() {
                prop_assert!(allowed.access(&all, resource_type, interaction).is_allowed());
            }
        }
    }
}

#[test]
fn grantable_keeps_allowed_part_of_wider_request() {
    let allowed = parse("system/Patient.rs system/Observation.rs?category=laboratory openid");
    let cases = [
        (
            "system/*.rs",
            "system/Patient.rs system/Observation.rs?category=laboratory",
        ),
        ("system/Patient.cruds", "system/Patient.rs"),
        ("system/Patient.r", "system/Patient.r"),
        (
            "system/Observation.rs",
            "system/Observation.rs?category=laboratory",
        ),
        ("system/Encounter.rs openid profile", "openid"),
        ("user/*.rs", ""),
    ];

    for (request, expected) in cases {
        assert_eq!(
            parse(request).grantable(&allowed).to_string(),
            expected,
            "{request}"
        );
    }
}
