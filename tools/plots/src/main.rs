//! Draws the plots of docs/benchmarks.md as SVG from `BENCH <name> <value>
//! <unit>` lines (`make plots`):
//!
//! - `cost-vs-size.svg`: ALLOC, ATTACH and FREE against buffer size on the
//!   release kernel, each next to its kernel floor (`make qemu-bench`);
//! - `throughput.svg`: bytes a client cycles through per second (ALLOC,
//!   ATTACH, DETACH, FREE of one buffer) against buffer size, debug and
//!   release kernels, at QEMU's one guest instruction per nanosecond;
//! - `fragmentation.svg`: the largest allocatable buffer, as a fraction of
//!   the free memory, against pool occupancy, from `make bench`'s
//!   `frag_<allocator>_<occupancy>` lines, when there are any.
//!
//! ```text
//! capbuf-plots OUTPUT_DIR FILE...
//! ```

use std::collections::BTreeMap;

use plotters::prelude::*;

const SIZES: [(f64, &str); 5] =
    [(4096.0, "4k"), (65536.0, "64k"), (2097152.0, "2m"), (3145728.0, "3m"), (16777216.0, "16m")];
const COLOURS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn read(files: &[String]) -> Result<BTreeMap<String, f64>> {
    let mut values = BTreeMap::new();
    for file in files {
        for line in std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["BENCH", name, value, _unit] = words[..] {
                if let Ok(value) = value.parse() {
                    values.insert(name.to_string(), value);
                }
            }
        }
    }
    Ok(values)
}

/// The x axis is log2 of the buffer size in bytes; label its whole steps.
fn size_label(log2: f64) -> String {
    let bytes = 2f64.powf(log2.round());
    if bytes >= 1048576.0 {
        format!("{} MiB", bytes / 1048576.0)
    } else {
        format!("{} KiB", bytes / 1024.0)
    }
}

/// The x range: 4 KiB to 16 MiB, with a margin.
const X_RANGE: std::ops::Range<f64> = 11.5..24.5;

/// Points `(size, value)` for the names `<prefix><size key>` that exist.
fn series(values: &BTreeMap<String, f64>, prefix: &str) -> Vec<(f64, f64)> {
    SIZES.iter().filter_map(|&(size, key)| values.get(&format!("{prefix}{key}")).map(|&v| (size.log2(), v))).collect()
}

fn cost_vs_size(values: &BTreeMap<String, f64>, path: &str) -> Result<bool> {
    let requests = [("alloc", "ALLOC"), ("attach", "ATTACH"), ("free", "FREE (attached)")];
    let all: Vec<(f64, f64)> = requests
        .iter()
        .flat_map(|(key, _)| {
            let mut points = series(values, &format!("release_request_{key}_"));
            points.extend(series(values, &format!("release_floorsum_{key}_")));
            points
        })
        .collect();
    if all.is_empty() {
        return Ok(false);
    }
    let top = all.iter().map(|p| p.1).fold(1.0, f64::max) * 2.0;
    let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("capbuf requests vs the kernel floor (release kernel, QEMU -icount)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(X_RANGE, (1000.0f64..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("buffer size")
        .y_desc("guest instructions")
        .x_labels(14)
        .x_label_formatter(&|x| size_label(*x))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (i, (key, name)) in requests.iter().enumerate() {
        let colour = COLOURS[i];
        let measured = series(values, &format!("release_request_{key}_"));
        chart
            .draw_series(LineSeries::new(measured.clone(), colour.stroke_width(2)))?
            .label(format!("{name}, measured"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart.draw_series(measured.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
        let floor = series(values, &format!("release_floorsum_{key}_"));
        chart
            .draw_series(floor.iter().map(|&p| Cross::new(p, 6, colour.stroke_width(2))))?
            .label(format!("{name}, floor"))
            .legend(move |(x, y)| Cross::new((x + 9, y), 5, colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    root.present()?;
    Ok(true)
}

fn throughput(values: &BTreeMap<String, f64>, path: &str) -> Result<bool> {
    let cycle = |kernel: &str| -> Vec<(f64, f64)> {
        SIZES
            .iter()
            .filter_map(|&(size, key)| {
                let parts: Option<Vec<f64>> = ["alloc", "attach", "detach", "free"]
                    .iter()
                    .map(|op| values.get(&format!("{kernel}_request_{op}_{key}")).copied())
                    .collect();
                // One instruction per nanosecond under -icount shift=0.
                parts.map(|p| (size.log2(), size / (p.iter().sum::<f64>() * 1e-9) / 1048576.0))
            })
            .collect()
    };
    let kernels = [("release", cycle("release")), ("debug", cycle("debug"))];
    if kernels.iter().all(|(_, points)| points.is_empty()) {
        return Ok(false);
    }
    let top = kernels.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold(1.0, f64::max) * 1.2;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("ALLOC + ATTACH + DETACH + FREE of one buffer: throughput", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(X_RANGE, 0.0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("buffer size")
        .y_desc("MiB/s at 1 guest instruction per ns")
        .x_labels(14)
        .x_label_formatter(&|x| size_label(*x))
        .draw()?;
    for (i, (kernel, points)) in kernels.iter().enumerate() {
        let colour = COLOURS[i];
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(format!("{kernel} kernel"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    root.present()?;
    Ok(true)
}

/// `frag_<allocator>_<occupancy>`: occupancy as written (a percentage or a fraction).
fn fragmentation(values: &BTreeMap<String, f64>, path: &str) -> Result<bool> {
    let mut allocators: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (name, &value) in values {
        let Some(rest) = name.strip_prefix("frag_") else { continue };
        let Some((allocator, occupancy)) = rest.rsplit_once('_') else { continue };
        let Ok(mut occupancy) = occupancy.parse::<f64>() else { continue };
        if occupancy > 1.0 {
            occupancy /= 100.0;
        }
        allocators.entry(allocator.to_string()).or_default().push((occupancy, value));
    }
    if allocators.is_empty() {
        return Ok(false);
    }
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Largest allocatable buffer vs pool occupancy (make bench)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0f64..1.0, 0.0f64..1.05)?;
    chart.configure_mesh().x_desc("occupancy").y_desc("largest allocatable / free").draw()?;
    for (i, (allocator, mut points)) in allocators.into_iter().enumerate() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(allocator)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    root.present()?;
    Ok(true)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((dir, files)) = args.split_first() else {
        return Err("usage: capbuf-plots OUTPUT_DIR FILE...".into());
    };
    let values = read(files)?;
    for (name, draw) in [
        ("cost-vs-size.svg", cost_vs_size as fn(&BTreeMap<String, f64>, &str) -> Result<bool>),
        ("throughput.svg", throughput),
        ("fragmentation.svg", fragmentation),
    ] {
        let path = format!("{dir}/{name}");
        if draw(&values, &path)? {
            println!("plots: wrote {path}");
        } else {
            println!("plots: no figures for {name} in {}; not drawn", files.join(", "));
        }
    }
    Ok(())
}
