//! Key and channel names. Every key of one job shares the hash tag `{<job id>}` so a
//! job's keys live in one Redis Cluster slot (job ids cannot contain braces).

/// Names under one prefix (default `jobwire:`).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Hash: `seq`, `snap` (snapshot JSON), `create` (create fingerprint).
    pub(crate) fn job(&self, id: &str) -> String {
        format!("{}{{{id}}}:job", self.prefix)
    }

    /// Stream: entry id `<seq>-0`, fields `k` (kind) and `e` (event JSON).
    pub(crate) fn events(&self, id: &str) -> String {
        format!("{}{{{id}}}:events", self.prefix)
    }

    /// Hash: event_id -> seq.
    pub(crate) fn idem(&self, id: &str) -> String {
        format!("{}{{{id}}}:idem", self.prefix)
    }

    /// Pub/sub channel carrying `<seq> <kind> <event JSON>`.
    pub(crate) fn channel(&self, id: &str) -> String {
        format!("{}{{{id}}}:ch", self.prefix)
    }

    /// The job id of a channel name, if it is one of ours.
    pub(crate) fn job_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('{')?
            .strip_suffix("}:ch")
    }

    /// Pub/sub channel of a project channel key (`jobwire_core::channel`), carrying
    /// `<seq> <kind> <job storage key> <event JSON>` for every event of its jobs.
    pub(crate) fn project_channel(&self, key: &str) -> String {
        format!("{}{{{key}}}:pch", self.prefix)
    }

    /// The project channel key of a channel name, if it is one of ours.
    pub(crate) fn project_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('{')?
            .strip_suffix("}:pch")
    }

    /// Sorted set of all job ids (score 0, listed by lexical range).
    pub(crate) fn index(&self) -> String {
        format!("{}index", self.prefix)
    }

    /// Hash of one API key: `rec` (the record JSON) and `revoked` (`0`/`1`).
    pub(crate) fn api_key(&self, id: &str) -> String {
        format!("{}apikey:{id}", self.prefix)
    }

    /// Set of a tenant's API key ids.
    pub(crate) fn tenant_keys(&self, tenant: &str) -> String {
        format!("{}apikeys:{tenant}", self.prefix)
    }

    /// Sorted set: job id scored by its expiry time in ms.
    pub(crate) fn expiry(&self) -> String {
        format!("{}expiry", self.prefix)
    }

    /// Sorted set: liveness deadline members (`b:<job>`, `t:<job>`) scored by ms.
    pub(crate) fn deadlines(&self) -> String {
        format!("{}deadlines", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        let k = Keys::new("jw:");
        assert_eq!(k.job("a.b:c"), "jw:{a.b:c}:job");
        assert_eq!(k.job_of_channel(&k.channel("a.b:c")), Some("a.b:c"));
        assert_eq!(k.job_of_channel("other:{x}:ch"), None);
        let p = k.project_channel("~p/acme/video");
        assert_eq!(k.project_of_channel(&p), Some("~p/acme/video"));
        assert_eq!(k.job_of_channel(&p), None);
    }
}
