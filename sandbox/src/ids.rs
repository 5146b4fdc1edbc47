//! User and group ids from a spec: refused unless they are plain ids in 0..=2^31-1.
//!
//! A uid or gid reaches setresuid(2), setresgid(2), setgroups(2), chown(2) and the uid
//! and gid maps as a 32-bit value, and the kernel reads 4294967295 — `(uid_t)-1` — as
//! "leave this id unchanged". A container whose spec (or image `USER`) says uid
//! 4294967295 would keep the setup helper's uid 0 and run as root, past kubelet's
//! runAsNonRoot check. runc refuses every id above 2^31-1 ("uids and gids must be in
//! range 0-2147483647"); so does mypod, for every id it hands to the kernel.

/// The largest id a container may name (i32::MAX, as runc).
pub const MAX_ID: u32 = i32::MAX as u32;

/// An id or id range out of bounds; `field` is its path in config.json.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{field}: {id} is out of range: uids and gids must be in range 0-{MAX_ID}")]
    OutOfRange { field: String, id: u64 },
    #[error("{field}: an id mapping of size 0")]
    EmptyRange { field: String },
}

/// Refuses `id` unless it is in 0..=[`MAX_ID`].
pub fn check(field: impl FnOnce() -> String, id: u32) -> Result<(), IdError> {
    if id > MAX_ID {
        return Err(IdError::OutOfRange {
            field: field(),
            id: id.into(),
        });
    }
    Ok(())
}

/// Refuses a mapping range unless it is non-empty and both its container and its host
/// ids stay within 0..=[`MAX_ID`] (so no range can wrap around to `(uid_t)-1`).
pub fn check_range(field: &str, container: u32, host: u32, size: u32) -> Result<(), IdError> {
    if size == 0 {
        return Err(IdError::EmptyRange {
            field: field.to_string(),
        });
    }
    for (what, first) in [("containerID", container), ("hostID", host)] {
        let last = u64::from(first) + u64::from(size) - 1;
        if last > u64::from(MAX_ID) {
            return Err(IdError::OutOfRange {
                field: format!("{field}.{what} + size - 1"),
                id: last,
            });
        }
    }
    Ok(())
}

/// The ids of a process's user, each with its path under `prefix`: uid, gid and every
/// additional gid.
pub fn user_ids<'a>(
    prefix: &'a str,
    user: &'a oci_spec::runtime::User,
) -> impl Iterator<Item = (String, u32)> + 'a {
    [
        (format!("{prefix}.uid"), user.uid()),
        (format!("{prefix}.gid"), user.gid()),
    ]
    .into_iter()
    .chain(
        user.additional_gids()
            .iter()
            .flatten()
            .enumerate()
            .map(move |(i, g)| (format!("{prefix}.additionalGids[{i}]"), *g)),
    )
}

/// The ids of a process's user: uid, gid and every additional gid.
pub fn check_user(prefix: &str, user: &oci_spec::runtime::User) -> Result<(), IdError> {
    for (field, id) in user_ids(prefix, user) {
        check(|| field, id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(json: &str) -> oci_spec::runtime::User {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn minus_one_and_every_id_above_i32_max_are_refused() {
        for id in [u32::MAX, u32::MAX - 1, MAX_ID + 1] {
            let e = check(|| "process.user.uid".into(), id).unwrap_err();
            assert!(e.to_string().contains("0-2147483647"), "{e}");
            assert!(e.to_string().contains("process.user.uid"), "{e}");
        }
        for id in [0, 1000, 65534, MAX_ID] {
            check(|| "x".into(), id).unwrap();
        }
    }

    #[test]
    fn each_id_of_a_user_is_checked_and_named() {
        check_user(
            "process.user",
            &user(r#"{"uid":1000,"gid":1000,"additionalGids":[1,2]}"#),
        )
        .unwrap();
        let cases = [
            (r#"{"uid":4294967295,"gid":0}"#, "process.user.uid"),
            (r#"{"uid":0,"gid":4294967295}"#, "process.user.gid"),
            (
                r#"{"uid":0,"gid":0,"additionalGids":[10,4294967295]}"#,
                "process.user.additionalGids[1]",
            ),
        ];
        for (json, field) in cases {
            let e = check_user("process.user", &user(json)).unwrap_err();
            assert!(e.to_string().contains(field), "{json}: {e}");
        }
    }

    #[test]
    fn ranges_may_not_reach_past_i32_max_or_be_empty() {
        check_range("m", 0, 100_000, 65536).unwrap();
        check_range("m", 0, MAX_ID, 1).unwrap();
        let e = check_range("linux.uidMappings[0]", 0, 0, u32::MAX).unwrap_err();
        assert!(
            e.to_string().contains("linux.uidMappings[0].containerID"),
            "{e}"
        );
        let e = check_range("m", 0, u32::MAX, 1).unwrap_err();
        assert!(e.to_string().contains("hostID"), "{e}");
        let e = check_range("m", MAX_ID, 0, 2).unwrap_err();
        assert!(e.to_string().contains("containerID"), "{e}");
        assert_eq!(
            check_range("m", 0, 0, 0),
            Err(IdError::EmptyRange { field: "m".into() })
        );
    }
}
