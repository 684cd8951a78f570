//! The list of event types: topic, released schema versions and Rust type of each.
//!
//! Adding an event type or a schema version means adding it here. The `.avsc` files are
//! embedded at compile time, so a listed file that does not exist fails the build, and a
//! test fails when a file under `avro/` is missing from this list.

use crate::events::*;
use crate::registry::{EventSchemas, Payload};
use crate::{Event, Result};

/// Generates, from one list, the embedded schema table, the `Event` impls and `AnyEvent`.
///
/// Each line is `Name in "topic", versions [1, 2, ...]`, optionally followed by
/// `, size <fn>` naming a function that estimates the encoded size of large events.
macro_rules! event_catalog {
    ($( $name:ident in $topic:literal, versions [$($version:literal),+] $(, size $size:path)? ;)+) => {
        pub(crate) static EVENT_SCHEMAS: &[EventSchemas] = &[$(
            EventSchemas {
                name: concat!("hearth.events.", stringify!($name)),
                current: include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"), "/avro/", stringify!($name), ".avsc"
                )),
                history: &[$((
                    $version,
                    include_str!(concat!(
                        env!("CARGO_MANIFEST_DIR"), "/avro/history/",
                        stringify!($name), ".v", $version, ".avsc"
                    )),
                )),+],
            },
        )+];

        $(
            impl crate::sealed::Sealed for $name {}

            impl Event for $name {
                const NAME: &'static str = concat!("hearth.events.", stringify!($name));
                const TOPIC: &'static str = $topic;

                fn event_id(&self) -> &str {
                    &self.event_id
                }

                fn occurred_at(&self) -> i64 {
                    self.occurred_at
                }

                fn encoded_size_hint(&self) -> usize {
                    event_catalog!(@size self $(, $size)?)
                }
            }

            impl From<$name> for AnyEvent {
                fn from(event: $name) -> Self {
                    AnyEvent::$name(event)
                }
            }
        )+

        /// An event of any type, as returned by [`decode_any`](crate::decode_any).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum AnyEvent {
            $($name($name),)+
        }

        impl AnyEvent {
            /// Returns the full Avro name of the event's type, e.g. `hearth.events.ApiCall`.
            pub fn name(&self) -> &'static str {
                match self {
                    $(AnyEvent::$name(_) => <$name as Event>::NAME,)+
                }
            }

            /// Returns the log topic that events of this type are appended to.
            pub fn topic(&self) -> &'static str {
                match self {
                    $(AnyEvent::$name(_) => <$name as Event>::TOPIC,)+
                }
            }

            /// Returns the event's fields as JSON, for tools that show events.
            pub fn to_json(&self) -> serde_json::Value {
                let fields = match self {
                    $(AnyEvent::$name(event) => serde_json::to_value(event),)+
                };
                fields.unwrap_or(serde_json::Value::Null)
            }

            pub fn event_id(&self) -> &str {
                match self {
                    $(AnyEvent::$name(event) => event.event_id(),)+
                }
            }

            /// Returns when the event happened, in microseconds since the Unix epoch.
            pub fn occurred_at(&self) -> i64 {
                match self {
                    $(AnyEvent::$name(event) => event.occurred_at(),)+
                }
            }

            /// Encodes the event as [`encode`](crate::encode) does.
            pub fn encode(&self) -> Result<Vec<u8>> {
                match self {
                    $(AnyEvent::$name(event) => crate::encode(event),)+
                }
            }
        }

        /// Decodes a payload into the Rust type of its event, or returns `None` for an
        /// event that has no Rust type in this list.
        pub(crate) fn decode_payload(payload: &Payload) -> Option<Result<AnyEvent>> {
            match payload.event.name {
                $(<$name as Event>::NAME => Some(payload.decode().map(AnyEvent::$name)),)+
                _ => None,
            }
        }
    };

    (@size $event:ident) => { DEFAULT_SIZE_HINT };
    (@size $event:ident, $size:path) => { $size($event) };
}

/// Initial output capacity for events without large strings. The buffer grows past it
/// when needed.
const DEFAULT_SIZE_HINT: usize = 512;

event_catalog! {
    AppRegistered in "hearth.auth", versions [1];
    AppUpdated in "hearth.auth", versions [1];
    AppSecretRotated in "hearth.auth", versions [1];
    AppDisabled in "hearth.auth", versions [1];
    AppEnabled in "hearth.auth", versions [1];
    SiteRegistered in "hearth.auth", versions [1];
    SiteUpdated in "hearth.auth", versions [1];
    AppActivated in "hearth.auth", versions [1];
    AppDeactivated in "hearth.auth", versions [1];
    LaunchCreated in "hearth.auth", versions [1];
    AuthorizationGranted in "hearth.auth", versions [1];
    AuthorizationDenied in "hearth.auth", versions [1];
    CodeRedeemed in "hearth.auth", versions [1];
    TokenIssued in "hearth.auth", versions [1];
    TokenRefreshed in "hearth.auth", versions [1, 2];
    TokenRevoked in "hearth.auth", versions [1];
    GrantRevoked in "hearth.auth", versions [1];
    UserRegistered in "hearth.auth", versions [1];
    UserDisabled in "hearth.auth", versions [1];
    ConsoleSignedIn in "hearth.auth", versions [1];
    ConsoleSignedOut in "hearth.auth", versions [1];
    ConsoleSignInFailed in "hearth.auth", versions [1];
    ApiCall in "hearth.api", versions [1];
    ResourceTransaction in "hearth.resources", versions [1], size resource_transaction_size;
    BulkJobRequested in "hearth.bulk", versions [1, 2, 3];
    BulkJobProgressed in "hearth.bulk", versions [1];
    BulkJobCompleted in "hearth.bulk", versions [1];
    BulkJobFailed in "hearth.bulk", versions [1];
    BulkJobCancelled in "hearth.bulk", versions [1];
    BulkFilesDeleted in "hearth.bulk", versions [1];
    EhrResponseCached in "hearth.ehr", versions [1], size ehr_response_size;
    EhrCacheInvalidated in "hearth.ehr", versions [1];
}

/// Bytes estimated for the union indexes and length prefixes of one transaction entry's
/// eight fields.
const ENTRY_PREFIX_ESTIMATE: usize = 8 * 10;

/// Estimates the body size of a transaction from its strings, so that encoding megabytes
/// of resources allocates the output once.
fn resource_transaction_size(event: &ResourceTransaction) -> usize {
    let text = |value: &Option<String>| value.as_ref().map_or(0, String::len);
    let entries: usize = event
        .entries
        .iter()
        .map(|entry| {
            entry.resource_type.len()
                + text(&entry.id)
                + text(&entry.full_url)
                + text(&entry.resource)
                + text(&entry.if_match)
                + text(&entry.if_none_exist)
                + text(&entry.criteria)
                + ENTRY_PREFIX_ESTIMATE
        })
        .sum();
    DEFAULT_SIZE_HINT + entries
}

fn ehr_response_size(event: &EhrResponseCached) -> usize {
    DEFAULT_SIZE_HINT + event.body.len() + event.upstream_url.len()
}
