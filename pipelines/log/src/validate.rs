//! Argument checks shared by both backends.

use crate::{Error, Result};

/// Largest partition count a topic may have.
const MAX_PARTITIONS: u32 = 1024;
/// Maximum length of a topic name, as in Kafka.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a topic name against Kafka's rules: 1 to 249 characters from `[A-Za-z0-9._-]`,
/// and neither `.` nor `..`. The embedded log also uses the name as a directory name.
pub(crate) fn validate_topic_name(topic: &str) -> Result<()> {
    let valid_chars = topic
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    let valid = !topic.is_empty()
        && topic.len() <= MAX_TOPIC_NAME_LEN
        && valid_chars
        && topic != "."
        && topic != "..";
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid topic name {topic:?}: use 1 to {MAX_TOPIC_NAME_LEN} characters from \
             [A-Za-z0-9._-], other than \".\" and \"..\""
        )))
    }
}

/// Checks the partition count of a topic to be created.
pub(crate) fn validate_partition_count(partitions: u32) -> Result<()> {
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(Error::InvalidArgument(format!(
            "a topic needs 1 to {MAX_PARTITIONS} partitions, not {partitions}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("hearth.resources").is_ok());
        assert!(validate_topic_name("a-b_c.9").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name(".").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn partition_count_limits() {
        assert!(validate_partition_count(0).is_err());
        assert!(validate_partition_count(1).is_ok());
        assert!(validate_partition_count(MAX_PARTITIONS + 1).is_err());
    }
}
