//! Log output: the tracing subscriber of `levee run` and friends, text or flat JSON.
//!
//! JSON lines are flat, as Envoy's and nginx's JSON logs are: one object per line with
//! `timestamp`, `level` and `target`, then the fields of the spans the event is in (outermost
//! first), then the event's own fields; each key once, the innermost value winning. (The
//! `tracing-subscriber` JSON format nests them under `span` and `spans` instead, repeating
//! every span's fields in each line.)

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Sets up tracing: `--log-level`, else RUST_LOG, else `info`; text or JSON lines, with ANSI
/// colours only when stdout is a terminal (a file, a pipe or a log collector gets plain
/// text).
pub fn init_tracing(level: Option<&str>, format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = level
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
    };
}

/// The flat JSON line format (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut line = FlatLine::default();
        line.set("timestamp", Value::String(timestamp));
        line.set("level", Value::from(meta.level().as_str()));
        line.set("target", Value::from(meta.target()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() {
                    line.merge_object(&fields.fields);
                }
            }
        }
        event.record(&mut line);
        let text = serde_json::to_string(&line.into_map()).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// The keys and values of one line, in first-seen order, each key once.
#[derive(Debug, Default)]
struct FlatLine {
    fields: Vec<(String, Value)>,
}

impl FlatLine {
    /// Sets `key` (in its first place if already there).
    fn set(&mut self, key: &str, value: Value) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = value,
            None => self.fields.push((key.to_owned(), value)),
        }
    }

    /// Merges a span's fields, stored by `JsonFields` as one JSON object.
    fn merge_object(&mut self, json: &str) {
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) {
            for (key, value) in map {
                self.set(&key, value);
            }
        }
    }

    /// The line as an ordered JSON object.
    fn into_map(self) -> OrderedObject {
        OrderedObject(self.fields)
    }
}

/// Serializes as a JSON object keeping its keys' order (a `serde_json::Map` sorts them).
struct OrderedObject(Vec<(String, Value)>);

impl serde::Serialize for OrderedObject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Visit for FlatLine {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(emit: impl FnOnce()) -> Vec<(String, serde_json::Map<String, Value>)> {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        for line in text.lines() {
            let head = r#"{"timestamp":"#;
            assert!(line.starts_with(head), "timestamp first: {line}");
            let (level, target) = (line.find(r#""level":"#), line.find(r#""target":"#));
            assert!(level < target, "then level, then target: {line}");
        }
        text.lines()
            .map(|l| match serde_json::from_str(l) {
                Ok(Value::Object(map)) => (l.to_owned(), map),
                other => panic!("not one JSON object per line: {l:?} ({other:?})"),
            })
            .collect()
    }

    #[test]
    fn span_fields_are_merged_flat_once_and_the_innermost_wins() {
        let lines = lines_of(|| {
            let outer = tracing::info_span!("conn", worker = 1, peer = "1.2.3.4:5", sni = "a");
            let _o = outer.enter();
            let inner = tracing::info_span!("req", sni = "b", path = "/x");
            let _i = inner.enter();
            tracing::warn!(target: "levee::test", status = 502u16, ok = false, "upstream failed");
        });
        let [(raw, line)] = &lines[..] else {
            panic!("{lines:?}")
        };
        assert_eq!(raw.matches(r#""sni":"#).count(), 1, "{raw}");
        let mut keys: Vec<&str> = line.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let want = [
            "level",
            "message",
            "ok",
            "path",
            "peer",
            "sni",
            "status",
            "target",
            "timestamp",
            "worker",
        ];
        assert_eq!(keys, want, "each key once: {line:?}");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "levee::test");
        assert_eq!(line["worker"], 1);
        assert_eq!(line["sni"], "b", "innermost wins");
        assert_eq!(line["status"], 502);
        assert_eq!(line["ok"], false);
        assert_eq!(line["message"], "upstream failed");
        assert!(line.values().all(|v| !v.is_object() && !v.is_array()));
    }

    #[test]
    fn a_root_event_carries_only_its_own_fields() {
        let lines = lines_of(|| {
            let span = tracing::info_span!("conn", worker = 1);
            let _s = span.enter();
            tracing::info!(target: "levee::access", parent: None, path = "/p", bytes = 3u64);
        });
        let [(_, line)] = &lines[..] else {
            panic!("{lines:?}")
        };
        assert!(!line.contains_key("worker"), "{line:?}");
        assert_eq!(line["path"], "/p");
        assert_eq!(line["bytes"], 3);
    }
}
