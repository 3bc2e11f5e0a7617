//! Counts the records of a payload through `carrierhub_formats::open`, for benchmarking the
//! bare readers (no mapping, no store).
//!
//! ```text
//! cargo run --release -p carrierhub-formats --example count_records -- \
//!     --format csv --delimiter ';' FILE
//! cargo run --release -p carrierhub-formats --example count_records -- \
//!     --format csv --baseline FILE          # the csv crate alone, ByteRecord counting
//! ```
//!
//! Options: `--format F` (csv, fixed, xlsx, xls, json, ndjson, xml), `--delimiter C`
//! (`tab` for a tab), `--quote C`, `--encoding E`, `--header-row N`, `--footer-rows N`,
//! `--sheet NAME` (repeatable), `--records POINTER`, `--record-element E`,
//! `--layout NAME:START:LENGTH,...`, `--max-field-bytes N`, `--max-record-bytes N`,
//! `--baseline` (csv only).
//!
//! Prints one line of `key=value` pairs: format, records, record_errors, bytes, seconds,
//! records_per_s, mib_per_s (and the format error that ended the stream, if any).

use carrierhub_formats::{open, FixedColumn, ReaderSpec, SourceFormat};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn usage(message: &str) -> ExitCode {
    eprintln!("count_records: {message}");
    eprintln!(
        "usage: count_records --format F [--delimiter C] [--quote C] [--encoding E] [--header-row N] \
         [--footer-rows N] [--sheet NAME]... [--records POINTER] [--record-element E] \
         [--layout NAME:START:LENGTH,...] [--max-field-bytes N] [--max-record-bytes N] [--baseline] FILE"
    );
    ExitCode::from(2)
}

fn byte_option(value: &str) -> Result<u8, String> {
    match value {
        "tab" | "\\t" => Ok(b'\t'),
        v if v.len() == 1 => Ok(v.as_bytes()[0]),
        v => Err(format!("'{v}' is not a single byte")),
    }
}

fn layout(value: &str) -> Result<Vec<FixedColumn>, String> {
    value
        .split(',')
        .map(|part| {
            let fields: Vec<&str> = part.split(':').collect();
            let [name, start, length] = fields[..] else {
                return Err(format!("'{part}' is not NAME:START:LENGTH"));
            };
            Ok(FixedColumn {
                name: name.to_owned(),
                start: start.parse().map_err(|e| format!("'{start}': {e}"))?,
                length: length.parse().map_err(|e| format!("'{length}': {e}"))?,
            })
        })
        .collect()
}

struct Args {
    spec: ReaderSpec,
    baseline: bool,
    file: PathBuf,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut format: Option<SourceFormat> = None;
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut baseline = false;
    let mut file = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--baseline" => baseline = true,
            "--format" => {
                let value = args.next().ok_or("--format needs a value")?;
                format = Some(value.parse()?);
            }
            flag if flag.starts_with("--") => {
                let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
                settings.push((flag.to_owned(), value));
            }
            path => {
                if file.replace(PathBuf::from(path)).is_some() {
                    return Err("one FILE only".to_owned());
                }
            }
        }
    }
    let format = format.ok_or("--format is required")?;
    let mut spec = ReaderSpec::for_format(format);
    for (flag, value) in settings {
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} '{value}': {e}"))
        };
        match flag.as_str() {
            "--delimiter" => spec.delimiter = byte_option(&value)?,
            "--quote" => spec.quote = byte_option(&value)?,
            "--encoding" => spec.encoding = value.parse().map_err(|e| format!("{e}"))?,
            "--header-row" => spec.header_row = number()?,
            "--footer-rows" => spec.footer_rows = number()?,
            "--sheet" => spec.sheets.push(value),
            "--records" => spec.records = value,
            "--record-element" => spec.record_element = value,
            "--layout" => spec.layout = layout(&value)?,
            "--max-field-bytes" => spec.limits.max_field_bytes = number()?,
            "--max-record-bytes" => spec.limits.max_record_bytes = number()?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if baseline && format != SourceFormat::Csv {
        return Err("--baseline is for csv only".to_owned());
    }
    Ok(Args {
        spec,
        baseline,
        file: file.ok_or("FILE is required")?,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => return usage(&message),
    };
    let bytes = match std::fs::metadata(&args.file) {
        Ok(m) => m.len(),
        Err(e) => return usage(&format!("{}: {e}", args.file.display())),
    };
    let started = Instant::now();
    let mut records: u64 = 0;
    let mut errors: u64 = 0;
    let mut ended = None;
    if args.baseline {
        let mut reader = match csv::ReaderBuilder::new()
            .delimiter(args.spec.delimiter)
            .quote(args.spec.quote)
            .flexible(true)
            .from_path(&args.file)
        {
            Ok(r) => r,
            Err(e) => return usage(&e.to_string()),
        };
        let mut record = csv::ByteRecord::new();
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => records += 1,
                Ok(false) => break,
                Err(e) => {
                    ended = Some(e.to_string());
                    break;
                }
            }
        }
    } else {
        let mut reader = match open(&args.spec, &args.file) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("count_records: {e}");
                return ExitCode::FAILURE;
            }
        };
        while let Some(item) = reader.next_record() {
            match item {
                Ok(Ok(_)) => records += 1,
                Ok(Err(_)) => errors += 1,
                Err(e) => {
                    ended = Some(e.to_string());
                    break;
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let label = if args.baseline {
        "csv-baseline"
    } else {
        args.spec.format.label()
    };
    print!(
        "format={label} records={records} record_errors={errors} bytes={bytes} seconds={seconds:.3} records_per_s={:.0} mib_per_s={:.1}",
        (records + errors) as f64 / seconds.max(1e-9),
        bytes as f64 / (1024.0 * 1024.0) / seconds.max(1e-9)
    );
    match ended {
        Some(e) => {
            println!(" error={e:?}");
            ExitCode::FAILURE
        }
        None => {
            println!();
            ExitCode::SUCCESS
        }
    }
}
