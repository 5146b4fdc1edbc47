//! Where in a JSON document a parse failed: serde names the line and column, this names
//! the field (`process.user.uid`), so a wrong type reaches the user as the field it is in.

use serde::de::DeserializeOwned;

/// Parses `data` as `T` and, when that fails, says where: `Err((path, error))`, `path` being
/// the field's dotted path (`process.args[2]`), "." for the document itself.
pub fn parse<T: DeserializeOwned>(data: &[u8]) -> Result<T, (String, serde_json::Error)> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))?;
    de.end().map_err(|e| (".".to_string(), e))?;
    Ok(value)
}

/// The failure of [`parse`] as one line: `field: error` (just the error at the top level).
pub fn describe(path: &str, e: &serde_json::Error) -> String {
    // serde_path_to_error says "." for the document and "?" where the syntax broke
    // before any field could be named.
    if matches!(path, "." | "?" | "") || path.ends_with('?') {
        e.to_string()
    } else {
        format!("{path}: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_type_is_named_by_its_field() {
        let r = parse::<oci_spec::runtime::Process>(
            br#"{"cwd":"/","user":{"uid":"0","gid":0},"args":["sh"]}"#,
        );
        let (path, e) = r.unwrap_err();
        assert_eq!(path, "user.uid");
        assert!(
            describe(&path, &e).starts_with("user.uid: invalid type: string"),
            "{e}"
        );
        let (path, e) = parse::<oci_spec::runtime::Process>(b"{not json").unwrap_err();
        assert_eq!(describe(&path, &e), e.to_string());
        assert!(
            parse::<oci_spec::runtime::Process>(br#"{"cwd":"/","user":{"uid":0,"gid":0}} x"#)
                .is_err()
        );
    }
}
