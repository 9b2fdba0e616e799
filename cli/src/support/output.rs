//! What the commands print on stdout: lines, pretty JSON, aligned tables.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::support::error::CliError;

/// Writes to the command's output; a closed pipe (`| head`) is not an error worth a message.
pub fn write_out(out: &mut dyn Write, bytes: &[u8]) -> Result<(), CliError> {
    match out.write_all(bytes) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::io(Path::new("<stdout>"), e)),
    }
}

/// Writes a line.
pub fn line(out: &mut dyn Write, text: &str) -> Result<(), CliError> {
    write_out(out, text.as_bytes())?;
    write_out(out, b"\n")
}

/// Prints `v` as indented JSON.
pub fn print_json(out: &mut dyn Write, v: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))?;
    line(out, &text)
}

/// Prints aligned columns.
pub fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> Result<(), CliError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    (*c).to_owned()
                } else {
                    format!("{c:<width$}", width = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    line(out, render(header.to_vec()).trim_end())?;
    for r in rows {
        line(
            out,
            render(r.iter().map(String::as_str).collect()).trim_end(),
        )?;
    }
    Ok(())
}
