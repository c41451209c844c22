//! A light PEP 508 check for `requirements` entries: enough to report a typo at its
//! file:line:column when the config is read, instead of from the resolver at lock
//! time. Markers are left to the resolver (uv), which knows every marker variable.

/// `Err` says what is wrong with `text` as one PEP 508 requirement.
pub(super) fn check_requirement(text: &str) -> Result<(), String> {
    let s = text.trim();
    if s.starts_with('-') {
        return Err("pip options are not requirements: use index_url or find_links".to_owned());
    }
    let (body, marker) = match s.split_once(';') {
        Some((body, marker)) => (body.trim_end(), Some(marker.trim())),
        None => (s, None),
    };
    if marker == Some("") {
        return Err("empty environment marker after `;`".to_owned());
    }
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || b"._-".contains(&bytes[i])) {
        i += 1;
    }
    let name = &body[..i];
    if !is_name(name) {
        return Err(
            "expected a distribution name first (letters, digits, '.', '_', '-'), \
             e.g. \"requests>=2.31,<3\""
                .to_owned(),
        );
    }
    let mut rest = body[i..].trim_start();
    if let Some(after) = rest.strip_prefix('[') {
        let Some((extras, tail)) = after.split_once(']') else {
            return Err("unclosed `[` of extras".to_owned());
        };
        // `name[]` is valid PEP 508: no extras at all.
        if !extras.trim().is_empty() {
            for extra in extras.split(',').map(str::trim) {
                if !is_name(extra) {
                    return Err(format!("invalid extra {extra:?}"));
                }
            }
        }
        rest = tail.trim_start();
    }
    if let Some(url) = rest.strip_prefix('@') {
        let url = url.trim();
        if url.is_empty() || url.contains(char::is_whitespace) {
            return Err("expected one URL after `@`".to_owned());
        }
        return Ok(());
    }
    let specs = match rest.strip_prefix('(') {
        Some(inner) => inner
            .strip_suffix(')')
            .ok_or_else(|| "unclosed `(` of the version specifiers".to_owned())?,
        None => rest,
    };
    if specs.trim().is_empty() {
        return Ok(());
    }
    for spec in specs.split(',') {
        check_specifier(spec.trim())?;
    }
    Ok(())
}

fn is_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
        }
        _ => false,
    }
}

fn check_specifier(spec: &str) -> Result<(), String> {
    // Longest operators first, so `===` is not read as `==` then `=`.
    const OPERATORS: [&str; 8] = ["===", "~=", "==", "!=", "<=", ">=", "<", ">"];
    let Some(op) = OPERATORS.iter().find(|op| spec.starts_with(**op)) else {
        return Err(format!(
            "{spec:?} is not a version specifier: start it with ==, !=, <=, >=, <, >, ~= or ==="
        ));
    };
    let version = spec[op.len()..].trim();
    let ok = !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._*+!-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("expected a version after `{op}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::check_requirement;

    #[test]
    fn accepts_pep508() {
        for ok in [
            "requests",
            "requests>=2.31,<3",
            "pydantic==1.10.*",
            "packaging == 20.9",
            "foo[bar, baz]>=1; python_version < '3.11'",
            "name (>=1.0)",
            "pkg @ https://example.invalid/pkg-1.0-py3-none-any.whl",
            "zope.interface~=5.0",
        ] {
            assert_eq!(check_requirement(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_what_is_not() {
        for (bad, says) in [
            (">=2", "distribution name"),
            ("requests>=", "version after `>=`"),
            ("requests 2.0", "not a version specifier"),
            ("foo[bar", "unclosed"),
            ("-e .", "pip options"),
            ("foo;", "empty environment marker"),
            ("foo @ ", "URL"),
        ] {
            let err = check_requirement(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
