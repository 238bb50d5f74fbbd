//! The HTML report: one self-contained file (inline CSS and SVG, no
//! network fetch, readable with JavaScript off; a few lines of inline
//! script only make tables sortable). The template auto-escapes every
//! value; the SVG is built in [`super::svg`], which escapes its own text.

use minijinja::value::Value;
use minijinja::{Environment, context};

use super::format;
use super::model::{CgroupOut, ContainerOut, NetnsOut, Report};
use super::tables;
use super::{join_svg, svg};

const TEMPLATE: &str = include_str!("report.html.j2");
/// Conversations of the network section with plots (the rest in a table).
const NETWORK_PLOTS: usize = 5;

pub fn render(r: &Report, top: usize) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    // Auto-escaping is chosen by the template name's extension.
    env.add_template("report.html", TEMPLATE)?;
    env.add_filter("num", format::count);
    env.add_filter("bytes", format::bytes);
    env.add_filter("dur", format::latency);
    env.add_filter("sdur", format::signed_latency);
    env.add_filter("secs", format::seconds);
    env.add_filter("pct", format::percent);
    env.add_filter("rate", format::opt_rate);
    env.add_filter("byterate", format::byte_rate);

    let sizes: Vec<(String, u64)> = r
        .sizes
        .iter()
        .map(|s| {
            let range = if s.low == s.high {
                s.low.to_string()
            } else {
                format!("{}-{}", s.low, s.high)
            };
            (format!("{} {range} B", s.direction), s.count)
        })
        .collect();
    let safe = |s: String| Value::from_safe_string(s);
    let charts = context! {
        ops => safe(svg::ops_chart(&r.series)),
        bytes => safe(svg::bytes_chart(&r.series)),
        latency => safe(svg::latency_chart(&r.latency)),
        heatmap => safe(svg::heatmap(&r.heatmap)),
        errors => safe(svg::errors_chart(&r.series)),
        sizes => safe(svg::bars("Sizes (bytes per op, log2 buckets)", &sizes)),
    };
    // The cross-machine join and the network's side (docs/join.md).
    let join_chart = r.join.as_ref().map(|j| safe(join_svg::delays_chart(j)));
    let network_charts: Vec<Value> = r
        .network
        .as_ref()
        .map(|n| {
            n.conversations
                .iter()
                .take(NETWORK_PLOTS)
                .map(|c| safe(join_svg::network_charts(c)))
                .collect()
        })
        .unwrap_or_default();
    let tmpl = env.get_template("report.html")?;
    let multi = r.machines.len() > 1;
    let cookies = r.conversations.iter().any(|c| c.socket_cookie.is_some());
    let tables = context! {
        runs => tables::runs().html(&r.runs, usize::MAX),
        machines => tables::machines().html(&r.machines, usize::MAX),
        overview => tables::overview().html(&r.overview, usize::MAX).fixed(),
        latency => tables::latency_classes().html(&r.latency, usize::MAX).fixed(),
        flag_combinations => tables::flag_combinations().html(&r.msg_flags.combinations, top),
        flags => tables::flags().html(&r.msg_flags.flags, usize::MAX),
        processes => tables::processes(multi).html(&r.processes, top),
        commands => tables::commands().html(&r.commands, top),
        containers => r.containers.as_ref().map(|c| tables::groups::<ContainerOut>(multi).html(c, top)),
        cgroups => r.cgroups.as_ref().map(|c| tables::groups::<CgroupOut>(multi).html(c, top)),
        netns => r.netns.as_ref().map(|c| tables::groups::<NetnsOut>(multi).html(c, top)),
        conversations => tables::conversations(multi, cookies).html(&r.conversations, top),
        endpoints => tables::endpoints().html(&r.remote_endpoints, top),
        ports => tables::ports().html(&r.ports, top),
        error_kinds => tables::error_kinds().html(&r.error_kinds, usize::MAX),
        errors => tables::errors(multi).html(&r.errors, top),
        slowest => tables::exemplars().html(&r.exemplars.slowest, top),
        largest => tables::exemplars().html(&r.exemplars.largest, top),
    };
    tmpl.render(context! {
        r => Value::from_serialize(r),
        charts => charts,
        top => top,
        cookies => cookies,
        tables => tables,
        join_chart => join_chart,
        network_charts => network_charts,
    })
}
