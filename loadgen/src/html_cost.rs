//! The HTML report's "what the run cost" table: memory and CPU by group of processes,
//! and the hosts they cover.

use std::fmt::Write;

/// What the run cost, per group of processes; what this run could not see says so.
pub fn resources_table(body: &mut String, r: &crate::resources::ResourceReport) {
    let mib = |b: u64| b as f64 / 1_048_576.0;
    let unseen = "<td colspan=\"4\">not measured: the system under test runs elsewhere</td>";
    let system = |name: &str, u: &crate::resources::Usage, per: Option<f64>, cpu: Option<f64>| {
        match cpu {
        Some(cpu) => format!(
            "<tr><td>{name}</td><td class=\"num\">{}</td><td class=\"num\">{:.1} MiB</td><td class=\"num\">{}</td><td class=\"num\">{:.1} %</td></tr>",
            u.processes,
            mib(u.rss_bytes),
            per.map(|b| format!("{b:.0} B")).unwrap_or_default(),
            cpu * 100.0
        ),
        None => format!("<tr><td>{name}</td>{unseen}</tr>"),
    }
    };
    let _ = write!(
        body,
        "<h2>What the run cost</h2><table><tr><th></th><th>processes</th><th>memory (PSS) at the peak</th><th>per connection</th><th>CPU while holding</th></tr><tr><td>load generator</td><td class=\"num\">{}</td><td class=\"num\">{:.1} MiB</td><td class=\"num\">{:.0} B</td><td class=\"num\">{:.1} %</td></tr>{}{}</table><p>{} connections held from {:.0} s to {:.0} s; memory of every process seen grew by {:.1} MiB over that hold. Hosts covered: {}.</p>",
        r.peak.loadgen.processes, mib(r.peak.loadgen.rss_bytes), r.loadgen_bytes_per_connection, r.loadgen_cpu_cores * 100.0,
        system("gateways", &r.peak.gateways, r.gateway_bytes_per_connection, r.gateway_cpu_cores),
        system("backend and payment", &r.peak.backend, None, r.backend_cpu_cores),
        r.peak.connected, r.hold_from.at_s, r.hold_to.at_s, r.memory_growth_bytes() / 1_048_576.0,
        html_escape::encode_text(&r.hosts.join(", ")),
    );
}
