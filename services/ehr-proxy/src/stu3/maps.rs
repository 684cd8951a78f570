//! The STU3 to R4 differences of each converted resource type, from the R4
//! specification's conversion maps (hl7.org/fhir/R4, "R3 to R4" tabs of each resource).
//! Only fields that changed are listed; everything else has the same name and shape.

use super::Rule::{self, *};

/// Resource types with conversion rules.
pub const CONVERTED_TYPES: &[&str] = &[
    "AllergyIntolerance",
    "Condition",
    "DiagnosticReport",
    "Encounter",
    "Immunization",
    "MedicationRequest",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "Procedure",
];

/// Code systems whose STU3 URL `http://hl7.org/fhir/...` became
/// `http://terminology.hl7.org/CodeSystem/<name>` in R4, as `(stu3, name)`. The v2 and v3
/// systems follow one pattern and are mapped without a table.
pub const SYSTEMS: &[(&str, &str)] = &[
    (
        "http://hl7.org/fhir/observation-category",
        "observation-category",
    ),
    (
        "http://hl7.org/fhir/condition-category",
        "condition-category",
    ),
    (
        "http://hl7.org/fhir/condition-clinical",
        "condition-clinical",
    ),
    (
        "http://hl7.org/fhir/condition-ver-status",
        "condition-ver-status",
    ),
    (
        "http://hl7.org/fhir/allergy-clinical-status",
        "allergyintolerance-clinical",
    ),
    (
        "http://hl7.org/fhir/allergy-verification-status",
        "allergyintolerance-verification",
    ),
    (
        "http://hl7.org/fhir/medication-request-category",
        "medicationrequest-category",
    ),
    ("http://hl7.org/fhir/diagnosis-role", "diagnosis-role"),
    ("http://hl7.org/fhir/organization-type", "organization-type"),
    (
        "http://hl7.org/fhir/observation-statistics",
        "observation-statistics",
    ),
];

/// R4 search parameters that STU3 names differently, as `(type, r4, stu3)`.
pub const SEARCH_PARAMS: &[(&str, &str, &str)] = &[
    ("Condition", "recorded-date", "asserted-date"),
    ("MedicationRequest", "encounter", "context"),
    ("Immunization", "status-reason", "reason-not-given"),
];

const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const CONDITION_VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const ALLERGY_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const ALLERGY_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";

const PATIENT: &[Rule] = &[R3Only {
    parent: &[],
    field: "animal",
}];

const PRACTITIONER: &[Rule] = &[R3Only {
    parent: &[],
    field: "role",
}];

const ORGANIZATION: &[Rule] = &[];

const ENCOUNTER: &[Rule] = &[
    Rename {
        parent: &[],
        r3: "reason",
        r4: "reasonCode",
    },
    Rename {
        parent: &[],
        r3: "incomingReferral",
        r4: "basedOn",
    },
    R4Only {
        field: "serviceType",
    },
    R4Only {
        field: "reasonReference",
    },
];

const CONDITION: &[Rule] = &[
    // R4 adds `relapse`; STU3 calls it `recurrence`.
    Codes {
        field: "clinicalStatus",
        pairs: &[("recurrence", "recurrence"), ("recurrence", "relapse")],
    },
    CodeToConcept {
        field: "clinicalStatus",
        system: CONDITION_CLINICAL,
    },
    // STU3 `unknown` has no R4 code; R4 `unconfirmed` is the parent of `provisional`.
    Codes {
        field: "verificationStatus",
        pairs: &[
            ("unknown", ""),
            ("provisional", "provisional"),
            ("provisional", "unconfirmed"),
        ],
    },
    CodeToConcept {
        field: "verificationStatus",
        system: CONDITION_VERIFICATION,
    },
    Rename {
        parent: &[],
        r3: "context",
        r4: "encounter",
    },
    Rename {
        parent: &[],
        r3: "assertedDate",
        r4: "recordedDate",
    },
    R3Only {
        parent: &[],
        field: "abatementBoolean",
    },
    R4Only { field: "recorder" },
];

const OBSERVATION: &[Rule] = &[
    Rename {
        parent: &[],
        r3: "context",
        r4: "encounter",
    },
    StringToNotes {
        r3: "comment",
        r4: "note",
    },
    // NOTE: STU3 `related` (has-member, derived-from) is dropped, not split into R4
    // `hasMember` and `derivedFrom`.
    R3Only {
        parent: &[],
        field: "related",
    },
    R4Only { field: "partOf" },
    R4Only { field: "focus" },
    R4Only { field: "hasMember" },
    R4Only {
        field: "derivedFrom",
    },
];

const MEDICATION_REQUEST: &[Rule] = &[
    Rename {
        parent: &[],
        r3: "context",
        r4: "encounter",
    },
    Unwrap {
        field: "requester",
        inner: "agent",
    },
    SingleToList { field: "category" },
    DoseAndRate {
        field: "dosageInstruction",
    },
    Rename {
        parent: &["substitution"],
        r3: "allowed",
        r4: "allowedBoolean",
    },
    Codes {
        field: "intent",
        pairs: &[
            ("order", "order"),
            ("order", "original-order"),
            ("order", "reflex-order"),
            ("order", "filler-order"),
            ("proposal", "option"),
        ],
    },
    R3Only {
        parent: &[],
        field: "definition",
    },
    R4Only {
        field: "statusReason",
    },
    R4Only {
        field: "doNotPerform",
    },
    R4Only {
        field: "reportedBoolean",
    },
    R4Only {
        field: "reportedReference",
    },
    R4Only { field: "performer" },
    R4Only {
        field: "performerType",
    },
    R4Only {
        field: "instantiatesCanonical",
    },
    R4Only {
        field: "instantiatesUri",
    },
    R4Only {
        field: "courseOfTherapyType",
    },
    R4Only { field: "insurance" },
];

const ALLERGY_INTOLERANCE: &[Rule] = &[
    CodeToConcept {
        field: "clinicalStatus",
        system: ALLERGY_CLINICAL,
    },
    CodeToConcept {
        field: "verificationStatus",
        system: ALLERGY_VERIFICATION,
    },
    Rename {
        parent: &[],
        r3: "assertedDate",
        r4: "recordedDate",
    },
    R3Only {
        parent: &["reaction"],
        field: "certainty",
    },
    R4Only { field: "encounter" },
];

const PROCEDURE: &[Rule] = &[
    Rename {
        parent: &[],
        r3: "context",
        r4: "encounter",
    },
    Codes {
        field: "status",
        pairs: &[("suspended", "on-hold"), ("aborted", "stopped")],
    },
    FlagToStatus {
        flag: "notDone",
        not_done_status: "not-done",
        r3_status: "unknown",
    },
    Rename {
        parent: &[],
        r3: "notDoneReason",
        r4: "statusReason",
    },
    Rename {
        parent: &["performer"],
        r3: "role",
        r4: "function",
    },
    R3Only {
        parent: &[],
        field: "definition",
    },
    R4Only {
        field: "instantiatesCanonical",
    },
    R4Only {
        field: "instantiatesUri",
    },
    R4Only { field: "recorder" },
    R4Only { field: "asserter" },
];

const IMMUNIZATION: &[Rule] = &[
    Rename {
        parent: &[],
        r3: "date",
        r4: "occurrenceDateTime",
    },
    FlagToStatus {
        flag: "notGiven",
        not_done_status: "not-done",
        r3_status: "completed",
    },
    Hoist {
        parent: "explanation",
        child: "reason",
        r4: "reasonCode",
        first_only: false,
    },
    Hoist {
        parent: "explanation",
        child: "reasonNotGiven",
        r4: "statusReason",
        first_only: true,
    },
    Rename {
        parent: &[],
        r3: "practitioner",
        r4: "performer",
    },
    Rename {
        parent: &["performer"],
        r3: "role",
        r4: "function",
    },
    Rename {
        parent: &[],
        r3: "vaccinationProtocol",
        r4: "protocolApplied",
    },
    Rename {
        parent: &["protocolApplied"],
        r3: "doseSequence",
        r4: "doseNumberPositiveInt",
    },
    Rename {
        parent: &["protocolApplied"],
        r3: "seriesDoses",
        r4: "seriesDosesPositiveInt",
    },
    R3Only {
        parent: &["protocolApplied"],
        field: "doseStatus",
    },
    R3Only {
        parent: &["protocolApplied"],
        field: "doseStatusReason",
    },
    R3Only {
        parent: &["protocolApplied"],
        field: "description",
    },
    R4Only {
        field: "occurrenceString",
    },
    R4Only { field: "recorded" },
    R4Only {
        field: "reasonReference",
    },
    R4Only {
        field: "isSubpotent",
    },
    R4Only {
        field: "subpotentReason",
    },
    R4Only { field: "education" },
    R4Only {
        field: "programEligibility",
    },
    R4Only {
        field: "fundingSource",
    },
];

const DIAGNOSTIC_REPORT: &[Rule] = &[
    Rename {
        parent: &[],
        r3: "context",
        r4: "encounter",
    },
    SingleToList { field: "category" },
    Unwrap {
        field: "performer",
        inner: "actor",
    },
    Rename {
        parent: &[],
        r3: "codedDiagnosis",
        r4: "conclusionCode",
    },
    Rename {
        parent: &[],
        r3: "image",
        r4: "media",
    },
    R4Only {
        field: "resultsInterpreter",
    },
];

/// Returns the rules of a resource type, empty for types without differences or without a map.
pub fn rules(resource_type: &str) -> &'static [Rule] {
    match resource_type {
        "Patient" => PATIENT,
        "Practitioner" => PRACTITIONER,
        "Organization" => ORGANIZATION,
        "Encounter" => ENCOUNTER,
        "Condition" => CONDITION,
        "Observation" => OBSERVATION,
        "MedicationRequest" => MEDICATION_REQUEST,
        "AllergyIntolerance" => ALLERGY_INTOLERANCE,
        "Procedure" => PROCEDURE,
        "Immunization" => IMMUNIZATION,
        "DiagnosticReport" => DIAGNOSTIC_REPORT,
        _ => &[],
    }
}
