//! Who is asking, as far as the hub cares: the tenant whose namespace the job ids live
//! in, and optional allow-lists that narrow it further. The transport builds an
//! [`Access`] from a verified token (or [`Access::open`] when auth is off).
//!
//! Job ids are per tenant: tenant `acme`'s job `build-1` is stored under the key
//! `acme/build-1` (ids cannot contain `/`), so two tenants may use the same id and
//! neither can learn that the other's exists.

use jobwire_proto::Job;

/// The caller's namespace and allow-lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Tenant namespace; `None` is the single namespace of a server without auth.
    pub tenant: Option<String>,
    /// When set, only these job ids.
    pub jobs: Option<Vec<String>>,
    /// When set, only jobs in these projects.
    pub projects: Option<Vec<String>>,
}

impl Access {
    /// Everything in the default namespace (auth disabled).
    pub fn open() -> Access {
        Access::default()
    }

    /// A tenant with no allow-lists.
    pub fn tenant(t: impl Into<String>) -> Access {
        Access {
            tenant: Some(t.into()),
            ..Access::default()
        }
    }

    /// The storage key of job `id` in this caller's namespace.
    pub fn key(&self, id: &str) -> String {
        match &self.tenant {
            Some(t) => format!("{t}/{id}"),
            None => id.to_owned(),
        }
    }

    /// Whether the allow-list of ids admits `id` (checked before any read).
    pub fn may_use_id(&self, id: &str) -> bool {
        self.jobs.as_ref().is_none_or(|l| l.iter().any(|j| j == id))
    }

    /// Whether the allow-list of projects admits `project`.
    pub fn may_use_project(&self, project: Option<&str>) -> bool {
        match &self.projects {
            None => true,
            Some(l) => project.is_some_and(|p| l.iter().any(|x| x == p)),
        }
    }

    /// Whether this caller may see `job` at all.
    pub fn may_see(&self, job: &Job) -> bool {
        job.tenant == self.tenant
            && self.may_use_id(&job.id)
            && self.may_use_project(job.project.as_deref())
    }
}

/// Checks a tenant name taken from a token: 1-128 printable ASCII characters, none of
/// `/`, `{`, `}` (they delimit storage keys and Redis hash tags).
pub fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'{' | b'}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_by_tenant() {
        assert_eq!(Access::open().key("j"), "j");
        assert_eq!(Access::tenant("acme").key("j"), "acme/j");
        assert!(valid_tenant("acme-01"));
        assert!(!valid_tenant("a/b"));
        assert!(!valid_tenant("{x}"));
        assert!(!valid_tenant(""));
    }
}
