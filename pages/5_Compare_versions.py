"""Compare versions: is the new version better, and better for everyone?"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import auditkit
from auditkit import wording
from auditkit.cli import default_audits_dir
from auditkit.compare import (
    COMPARED_METRICS,
    CompareSettings,
    compare_audits,
    family_versions,
    find_audits,
    flip_table,
    forest_table,
    gap_table,
    trend_table,
    version_trend,
)
from ui.common import (
    data_root,
    dataset_choices,
    md_text,
    new_run_dir,
    registry_models,
    run_with_progress,
    show_control_warning,
    show_unreadable_audits,
)

st.set_page_config(page_title="Compare versions — auditkit", layout="wide")
st.title("Is the new version better — and better for everyone?")
show_unreadable_audits()
st.caption("Both versions are compared on the same images: those held out from the training of "
           "both. Every difference is paired (the same patients resampled for both versions), "
           "and the ranges allow for the many groups compared at once. " +
           wording.INTERVAL_EXPLANATION)


@st.cache_data(show_spinner=False)
def _comparison(path_a: str, path_b: str, margin: float, n_boot: int, root: str | None,
                _progress: object) -> dict:
    doc, _ = compare_audits(path_a, path_b, data_root=root, progress=_progress,  # type: ignore[arg-type]
                            settings=CompareSettings(margin=margin, n_boot=n_boot))
    return doc


families = family_versions()
if not families:
    st.info("No models in the registry. Add model folders under models/.")
    st.stop()
comparable = [i for i, v in enumerate(families.values()) if len(v) > 1]
family = st.sidebar.selectbox("Model family", list(families), key="compare_family",
                              index=comparable[0] if comparable else 0)
versions = families[family]
cards = {m["version"]: m for m in registry_models() if m["name"] == family}
show_control_warning(cards[versions[-1]])  # a control model family: say so first
names = dataset_choices()  # built-in and registered datasets
card_ds = cards[versions[-1]].get("dataset")
dataset = st.sidebar.selectbox("Dataset", names, index=names.index(card_ds) if card_ds in names
                               else 0, key=f"compare_dataset_{family}")
if len(versions) < 2:
    st.info(f"**{md_text(family)}** has one version ({md_text(versions[0])}): there is nothing "
            "to compare yet.")
    st.stop()
version_a = st.sidebar.selectbox("Version A (reference)", versions, index=len(versions) - 2,
                                 key=f"compare_a_{family}")
version_b = st.sidebar.selectbox("Version B (new)", versions, index=len(versions) - 1,
                                 key=f"compare_b_{family}")
margin_pts = st.sidebar.slider("Non-inferiority margin δ (percentage points)", 1, 20, 5,
                               key="compare_margin")
n_boot = st.sidebar.select_slider("Bootstrap resamples", [200, 500, 1000], value=1000,
                                  key="compare_n_boot")
if version_a == version_b:
    st.info("Pick two different versions in the sidebar.")
    st.stop()

audits_dir = default_audits_dir()
stored = {}
for entry in find_audits(audits_dir):
    m, d = entry["audit"]["model"], entry["audit"]["dataset"]
    if m["name"] == family and d["name"] == dataset:
        stored.setdefault(m["version"], entry)
missing = [v for v in (version_a, version_b) if v not in stored]
if missing and st.sidebar.button(f"Audit {', '.join(missing)} on {dataset}", key="compare_run",
                                 type="primary"):
    for v in missing:
        run_with_progress(ref=f"{family}@{v}", dataset_name=dataset,
                          config=auditkit.AuditConfig(checks=["performance", "fairness"],
                                                      n_boot=int(n_boot)),
                          out_dir=new_run_dir(f"{family}@{v}", dataset, "compare"))
    st.rerun()
if missing:
    st.info(f"No stored audit of **{md_text(family)} {md_text(', '.join(missing))}** on "
            f"**{md_text(dataset)}** yet. Press the audit button in the sidebar (or run "
            f"auditkit compare --models {md_text(f'{family}@{version_a},{family}@{version_b}')} "
            f"--dataset {md_text(dataset)}).")
    st.stop()

bar = st.progress(0.0, text="Comparing…")


def _progress(done: int, total: int, message: str) -> None:
    bar.progress(min(1.0, done / total) if total else 1.0, text=f"{message}: {done} of {total}")


try:
    doc = _comparison(str(stored[version_a]["path"]), str(stored[version_b]["path"]),
                      margin_pts / 100, int(n_boot), data_root(), _progress)
except auditkit.AuditKitError as exc:
    bar.empty()
    st.error(f"These two audits cannot be compared:\n\n```\n{exc}\n```")
    st.stop()
bar.empty()
res = doc["results"]
labels = (doc["labels"]["a"], doc["labels"]["b"])

st.header(f"{md_text(family)}: {md_text(labels[1])} against {md_text(labels[0])}")
st.markdown("**In plain words.** " + " ".join(md_text(s) for s in res["summary"][:3]))
for metric, ni in res["noninferiority"]["by_metric"].items():
    st.markdown(f"- **{wording.metric_name(metric).capitalize()}** — {md_text(ni['sentence'])}")
st.caption(md_text(doc["images"]["description"]) + f" Non-inferiority margin δ = {margin_pts} points; "
           f"{res['multiplicity']['family_size']} differences are judged together "
           "(Westfall–Young step-down), so a change is called real only if it stands out among "
           "all of them. For accuracy, sensitivity and specificity a range is never narrower "
           "than the paired score interval (Newcombe), so a group where few images changed "
           "answer is not over-read.")

st.header("1. Differences by group")
metric = st.selectbox("Metric", list(COMPARED_METRICS), format_func=wording.metric_name,
                      key="compare_metric")
st.caption(f"{wording.metric_name(metric).capitalize()}: {wording.metric_meaning(metric)}.")
table = forest_table(doc, metric)
ys = [f"{lbl} ({s})" for lbl, s in zip(table["label"], table["size"])]
fig = go.Figure()
fig.add_trace(go.Scatter(
    x=100 * table["difference"], y=ys, mode="markers", name="B − A (95% range on its own)",
    marker={"size": 10, "color": ["#bbbbbb" if tf else "#1f77b4" for tf in table["too_few"]],
            "symbol": "diamond"},
    error_x={"type": "data", "symmetric": False,
             "array": (100 * (table["high"] - table["difference"])).tolist(),
             "arrayminus": (100 * (table["difference"] - table["low"])).tolist()}))
fig.add_trace(go.Scatter(
    x=100 * table["difference"], y=ys, mode="markers", name="range allowing for every comparison",
    marker={"size": 1, "color": "#ff7f0e"},
    error_x={"type": "data", "symmetric": False, "color": "#ff7f0e", "thickness": 1,
             "array": (100 * (table["adj_high"] - table["difference"])).tolist(),
             "arrayminus": (100 * (table["difference"] - table["adj_low"])).tolist()}))
delta = -margin_pts if metric != "ece" else margin_pts
fig.add_vline(x=0, line_dash="dot", line_color="#555555")
fig.add_vline(x=delta, line_dash="dash", line_color="#d62728",
              annotation_text=f"δ = {margin_pts} points worse", annotation_position="top")
fig.update_layout(xaxis_title=f"{labels[1]} − {labels[0]}, {wording.metric_name(metric)} "
                  "(percentage points)", height=160 + 28 * len(table),
                  margin={"l": 10, "r": 10, "t": 30, "b": 40}, legend={"orientation": "h"},
                  yaxis={"autorange": "reversed"})  # all images first, then each attribute
st.plotly_chart(fig, key="compare_forest")
st.dataframe(
    table[["label", "size", "a_text", "b_text", "difference_text", "adjusted_text", "change",
           "noninferiority"]],
    hide_index=True, key="compare_forest_table",
    column_config={"label": "group", "size": "sample", "a_text": f"{labels[0]}",
                   "b_text": f"{labels[1]}", "difference_text": "B − A (95% range)",
                   "adjusted_text": "B − A (range allowing for every comparison)",
                   "change": "clear change?", "noninferiority": "not worse by more than δ?"})

st.header("2. Which images changed answer")
flips = flip_table(doc)
st.caption("Right → wrong: images version A got right and B gets wrong; wrong → right the "
           "reverse. McNemar's exact test asks whether the two kinds of flip are equally "
           "likely; the Holm column allows for testing every group.")
st.dataframe(flips.drop(columns=["too_few"]), hide_index=True, key="compare_flips",
             column_config={
                 "label": "group", "n": st.column_config.NumberColumn("images", format="%d"),
                 "both_right": st.column_config.NumberColumn("both right", format="%d"),
                 "right_to_wrong": st.column_config.NumberColumn("right → wrong", format="%d"),
                 "wrong_to_right": st.column_config.NumberColumn("wrong → right", format="%d"),
                 "both_wrong": st.column_config.NumberColumn("both wrong", format="%d"),
                 "mcnemar_p": st.column_config.NumberColumn("McNemar p", format="%.3f"),
                 "mcnemar_p_holm": st.column_config.NumberColumn("p (Holm)", format="%.3f")})

st.header("3. Did the gap between groups narrow?")
gaps = gap_table(doc, metric)
for g in res["gaps"]:
    if g["metric"] == metric:
        st.markdown(f"- {md_text(wording.gap_change_sentence(g, labels=labels))}")
if not gaps.empty and "gap_a_text" in gaps:
    st.dataframe(gaps[["attribute", "gap_a_text", "groups_a", "gap_b_text", "groups_b",
                       "change_text", "verdict"]], hide_index=True, key="compare_gaps",
                 column_config={"gap_a_text": f"gap in {labels[0]}", "groups_a": "best vs worst",
                                "gap_b_text": f"gap in {labels[1]}", "groups_b": "best vs worst",
                                "change_text": "change (95% range)", "verdict": "verdict"})

st.header("4. Every version of the family")
trend = trend_table(version_trend(family, dataset, audits_dir=audits_dir))
shown = trend[trend["status"] == "assessed"]
tfig = go.Figure()
for col, name in (("headline", "all test images"), ("worst", "worst group")):
    part = shown.dropna(subset=[col])
    tfig.add_trace(go.Scatter(
        x=part["version"], y=100 * part[col], mode="lines+markers", name=name,
        error_y={"type": "data", "symmetric": False,
                 "array": (100 * (part[f"{col}_high"] - part[col])).tolist(),
                 "arrayminus": (100 * (part[col] - part[f"{col}_low"])).tolist()}))
tfig.update_layout(yaxis_title="accuracy (%) with 95% interval", height=320,
                   margin={"l": 10, "r": 10, "t": 10, "b": 40})
st.plotly_chart(tfig, key="compare_trend")
st.dataframe(trend[["version", "headline_text", "n", "worst_group", "worst_text", "reason"]],
             hide_index=True, key="compare_trend_table",
             column_config={"headline_text": "accuracy, all test images",
                            "n": st.column_config.NumberColumn("images", format="%d"),
                            "worst_group": "worst group", "worst_text": "its accuracy",
                            "reason": "note"})
st.caption("Each version is measured on its own held-out images here, so these rows are not "
           "paired; the sections above compare two versions on the same images.")

extra = res.get("from_audits", {})
with st.expander("Robustness and privacy, where both audits ran them"):
    for key, title in (("robust_accuracy", "Robust accuracy per attack budget"),
                       ("corruption_flip_rate", "Answers flipped by image corruptions"),
                       ("membership_auc", "Membership-inference AUC")):
        part = extra.get(key, {})
        if part.get("status") != "assessed":
            st.markdown(f"**{title}:** "
                        f"{md_text(part.get('reason', wording.not_assessed('not run')))}")
            continue
        items = part.get("attacks") or part.get("corruptions") or [part]
        lines = []
        for item in items:
            o = item.get("overall")
            if o:
                what = item.get("attack") or item.get("corruption") or part.get("attack")
                lines.append(f"- {what} {item.get('budget_label') or item.get('severity') or ''}:"
                             f" {wording.fmt_difference(o['difference'], o['ci'])}")
        st.markdown(f"**{title}** ({md_text(extra.get('method'))}):\n" + "\n".join(lines))
