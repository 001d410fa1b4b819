//! Parsing of the values users type: durations, sizes, `K=V` pairs.

use std::time::Duration;

/// `30s`, `500ms`, `2m`, `1h`; a bare number is seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let parsed = match s.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(s).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if d.is_zero() => Err("a duration must be more than zero, e.g. `30s`".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!(
            "`{s}` is not a duration ({e}); write e.g. `30s`, `500ms` or `2m`"
        )),
    }
}

/// `128MiB`, `1GiB`, `64M`, `512KiB`, `1048576`; K/M/G are binary (1024).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let hint = || format!("`{s}` is not a size; write e.g. `128MiB`, `1GiB` or a number of bytes");
    let number: u64 = number.parse().map_err(|_| hint())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(hint()),
    };
    let bytes = number.checked_mul(1 << shift).ok_or_else(hint)?;
    if bytes == 0 {
        return Err("a size must be more than zero, e.g. `128MiB`".into());
    }
    Ok(bytes)
}

/// A socket address; `:PORT` means `127.0.0.1:PORT` (`:0` picks a free port).
pub(crate) fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    let full = if s.starts_with(':') {
        format!("127.0.0.1{s}")
    } else {
        s.to_string()
    };
    full.parse().map_err(|_| {
        format!("`{s}` is not an address; write e.g. `127.0.0.1:8080`, `0.0.0.0:80` or `:0`")
    })
}

/// `KEY=VALUE`, where the key is non-empty and has no `=`.
pub(crate) fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "`{s}` is not KEY=VALUE; write e.g. `--env GREETING=hello`"
        )),
    }
}

/// A `--secret` argument: `KEY=@FILE` reads FILE (relative to `base`;
/// one trailing newline dropped), a bare `KEY` reads the environment
/// variable `KEY`. Errors name the key and the file, never a value; a
/// literal `KEY=VALUE` is refused so it never lands in shell history.
pub(crate) fn parse_secret(s: &str, base: &std::path::Path) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, file)) if !key.is_empty() && file.starts_with('@') => Ok((
            key.to_string(),
            read_secret_file(key, &base.join(&file[1..]))?,
        )),
        Some((key, _)) => Err(format!(
            "`--secret {key}=…` takes no literal value (it would stay in shell history and process lists); write `--secret {key}=@FILE` to read a file, or `--secret {key}` to read the environment variable `{key}`"
        )),
        None if !s.is_empty() => Ok((s.to_string(), read_secret_env(s, s)?)),
        None => Err("`--secret` needs a name: `--secret KEY=@FILE` or `--secret KEY`".into()),
    }
}

/// The secret `key` from `file`, one trailing newline dropped.
pub(crate) fn read_secret_file(key: &str, file: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        format!(
            "cannot read secret `{key}` from `{}`: {e}; give a readable UTF-8 file",
            file.display()
        )
    })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
}

/// The secret `key` from the environment variable `var` of this process.
pub(crate) fn read_secret_env(key: &str, var: &str) -> Result<String, String> {
    std::env::var(var).map_err(|_| {
        format!(
            "secret `{key}`: the environment variable `{var}` is not set (or not UTF-8); set it, or read a file with `{key}=@FILE`"
        )
    })
}

/// `1234` as `1.2 KiB`, and so on.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").unwrap_err().contains("30s"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64 kb").unwrap(), 64 << 10);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12TiB").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen(":0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(
            parse_listen("0.0.0.0:80").unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert!(parse_listen("localhost").is_err());
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("A=").unwrap(), ("A".into(), "".into()));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(format_size(12), "12 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(64 << 20), "64.0 MiB");
    }

    #[test]
    fn secrets_come_from_files_or_the_environment_never_literals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "s3cr3t\n").unwrap();
        assert_eq!(
            parse_secret("TOKEN=@t", dir.path()).unwrap(),
            ("TOKEN".into(), "s3cr3t".into())
        );
        let literal = parse_secret("TOKEN=s3cr3t", dir.path()).unwrap_err();
        assert!(
            !literal.contains("s3cr3t") && literal.contains("=@FILE"),
            "{literal}"
        );
        let missing = parse_secret("TOKEN=@nope", dir.path()).unwrap_err();
        assert!(
            missing.contains("TOKEN") && missing.contains("nope"),
            "{missing}"
        );
        let unset = parse_secret("SHOAL_TEST_SURELY_UNSET_VAR", dir.path()).unwrap_err();
        assert!(unset.contains("not set"), "{unset}");
        let path = parse_secret("PATH", dir.path()).unwrap();
        assert_eq!(path.1, std::env::var("PATH").unwrap());
    }
}
