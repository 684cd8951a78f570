//! What the repository decided for one transaction event.

/// The result of applying one `ResourceTransaction`.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactionOutcome {
    /// Every entry was decided; for a batch, some entries may carry their own rejection.
    Applied(Vec<EntryOutcome>),
    /// A transaction or load failed as a whole and changed nothing.
    Rejected(Rejection),
    /// The event could not be decoded, so nothing was changed.
    Undecodable(String),
}

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryOutcome {
    /// The HTTP status of the entry: 201 created, 200 updated or matched, 204 deleted.
    pub status: u16,
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    /// Microseconds since the Unix epoch.
    pub last_updated: i64,
    /// Set for a batch entry that failed on its own.
    pub rejection: Option<Rejection>,
}

/// Why an entry or a whole transaction was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the entry in the event, when one entry caused it.
    pub entry: Option<usize>,
    /// HTTP status: 400, 404, 409, 410, 412 or 422.
    pub status: u16,
    /// OperationOutcome issue code, such as `invalid`, `conflict` or `not-found`.
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            entry: None,
            status,
            code,
            message: message.into(),
        }
    }

    pub fn at(mut self, entry: usize) -> Self {
        self.entry.get_or_insert(entry);
        self
    }
}
