//! The part of the Synthea sample the tests load, and the ids they need from it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hearth_e2e::synthea_dir;
use serde_json::Value;

/// Name prefixes of the Synthea files the fixture loads: the organization and
/// practitioner files and two patients.
const SAMPLE_FILES: &[&str] = &[
    "hospitalInformation",
    "practitionerInformation",
    "Fannie_Waelchi",
    "Dwain_McGlynn",
];

/// One patient of the sample and the ids of that patient's resources.
#[derive(Debug, Clone)]
pub struct PatientData {
    pub id: String,
    pub encounter: String,
    /// Every Observation of the patient.
    pub observations: Vec<String>,
    /// Observations with the category `laboratory`.
    pub laboratory: Vec<String>,
    /// Observations without the category `laboratory`.
    pub not_laboratory: Vec<String>,
}

/// The ids the tests need, read from the Synthea files themselves.
#[derive(Debug, Clone)]
pub struct Sample {
    pub files: Vec<PathBuf>,
    /// The patient that the user `fannie` is and that launches pick.
    pub patient: PatientData,
    /// A second patient, whose data patient-scoped tokens must not reach.
    pub other: PatientData,
    /// The Practitioner that the user `doctor` is.
    pub practitioner: String,
}

impl Sample {
    pub fn get() -> &'static Sample {
        static SAMPLE: OnceLock<Sample> = OnceLock::new();
        SAMPLE.get_or_init(Sample::read)
    }

    fn read() -> Sample {
        let dir = synthea_dir();
        let files: Vec<PathBuf> = SAMPLE_FILES.iter().map(|p| sample_file(dir, p)).collect();
        let practitioners = read_bundle(&files[1]);
        let practitioner = practitioners
            .iter()
            .find(|r| r["resourceType"] == "Practitioner")
            .and_then(|r| r["id"].as_str())
            .expect("the practitioner file has a Practitioner")
            .to_string();
        Sample {
            patient: patient_data(&files[2]),
            other: patient_data(&files[3]),
            practitioner,
            files,
        }
    }
}

fn sample_file(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("the Synthea directory is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no Synthea file starts with {prefix}"))
}

fn read_bundle(path: &Path) -> Vec<Value> {
    let bundle: Value = serde_json::from_slice(&std::fs::read(path).expect("readable file"))
        .expect("the Synthea file is JSON");
    bundle["entry"]
        .as_array()
        .expect("the Synthea file is a Bundle with entries")
        .iter()
        .map(|entry| entry["resource"].clone())
        .collect()
}

fn patient_data(path: &Path) -> PatientData {
    let resources = read_bundle(path);
    let id_of = |resource_type: &str| {
        resources
            .iter()
            .find(|r| r["resourceType"] == resource_type)
            .and_then(|r| r["id"].as_str())
            .unwrap_or_else(|| panic!("{} has no {resource_type}", path.display()))
            .to_string()
    };
    let mut data = PatientData {
        id: id_of("Patient"),
        encounter: id_of("Encounter"),
        observations: Vec::new(),
        laboratory: Vec::new(),
        not_laboratory: Vec::new(),
    };
    for observation in resources
        .iter()
        .filter(|r| r["resourceType"] == "Observation")
    {
        let id = observation["id"]
            .as_str()
            .expect("Observation.id")
            .to_string();
        data.observations.push(id.clone());
        if has_category(observation, "laboratory") {
            data.laboratory.push(id);
        } else {
            data.not_laboratory.push(id);
        }
    }
    data
}

/// Returns whether an Observation has a category coding with `code`.
pub fn has_category(observation: &Value, code: &str) -> bool {
    observation["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .any(|coding| coding["code"] == code)
}

/// Returns the id in `Patient/<id>`, or the reference itself when it has no type.
pub fn reference_id(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// Returns the id of the patient an Observation is about.
pub fn subject_of(observation: &Value) -> String {
    reference_id(
        observation["subject"]["reference"]
            .as_str()
            .unwrap_or_default(),
    )
    .to_string()
}
