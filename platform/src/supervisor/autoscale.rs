//! The horizontal autoscaler's decision: Kubernetes' HPA rule on CPU, as a pure function so
//! every decision can be explained, replayed (dry run) and table-tested.
//!
//! Rule (as the HPA documents it): `ratio = mean utilisation / target`; within the tolerance
//! band (|ratio − 1| ≤ tolerance) nothing changes; otherwise `desired = ceil(ratio × current)`.
//! Replicas without a metric (not ready, no sample yet) count conservatively: as 0 % when
//! scaling up and as exactly the target when scaling down; if that flips the direction or
//! lands in the band, nothing changes. Scale-up is immediate; scale-down takes the highest
//! recommendation of the stabilisation window (so a short dip does not remove replicas). The
//! result is clamped to `[min, max]`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The tunables of one deployment's autoscaler.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Target CPU utilisation as a fraction of each replica's CPU limit (0.8 = 80 %).
    pub target: f64,
    pub tolerance: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

/// What was decided and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub current_replicas: u32,
    /// The rule's raw recommendation (before stabilisation and bounds).
    pub recommendation: u32,
    pub desired_replicas: u32,
    /// Mean utilisation of the replicas that had a metric.
    pub utilisation: Option<f64>,
    /// Short name of the rule that decided: `noMetrics`, `withinTolerance`, `scaleUp`,
    /// `scaleDown`, `missingMetricsHold`, `stabilised`, `clampedToMin`, `clampedToMax`.
    pub rule: &'static str,
    pub explanation: String,
}

fn percent(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// Decides the replica count. `cpu` has one entry per current replica (its utilisation as a
/// fraction of its CPU limit, None when it has no metric); `window` holds the recommendations
/// made within the scale-down stabilisation window (oldest first, this one excluded).
pub fn decide(policy: &Policy, cpu: &[Option<f64>], window: &[u32]) -> Decision {
    let current = u32::try_from(cpu.len()).unwrap_or(u32::MAX);
    let known: Vec<f64> = cpu.iter().flatten().copied().collect();
    let missing = cpu.len() - known.len();
    let (recommendation, utilisation, mut rule, mut why) = if known.is_empty() {
        (
            current,
            None,
            "noMetrics",
            "no replica has a CPU metric yet: keep the replica count".to_owned(),
        )
    } else {
        let mean = known.iter().sum::<f64>() / known.len() as f64;
        let ratio = mean / policy.target;
        if (ratio - 1.0).abs() <= policy.tolerance {
            (
                current,
                Some(mean),
                "withinTolerance",
                format!(
                    "mean CPU {} of target {} (ratio {ratio:.2}) is within the ±{} band: no change",
                    percent(mean),
                    percent(policy.target),
                    percent(policy.tolerance)
                ),
            )
        } else if missing == 0 {
            let wanted = (ratio * f64::from(current)).ceil() as u32;
            let rule = if ratio > 1.0 { "scaleUp" } else { "scaleDown" };
            (
                wanted,
                Some(mean),
                rule,
                format!(
                    "ceil({current} × {} / {}) = {wanted}",
                    percent(mean),
                    percent(policy.target)
                ),
            )
        } else {
            // Fill the gaps against the direction of the change, then re-check.
            let up = ratio > 1.0;
            let filler = if up { 0.0 } else { policy.target };
            let filled = (known.iter().sum::<f64>() + filler * missing as f64) / cpu.len() as f64;
            let new_ratio = filled / policy.target;
            if (new_ratio - 1.0).abs() <= policy.tolerance || (new_ratio > 1.0) != up {
                (
                    current,
                    Some(mean),
                    "missingMetricsHold",
                    format!(
                        "{missing} replica(s) without a metric counted as {}: mean {} is no longer a clear {}; no change",
                        percent(filler),
                        percent(filled),
                        if up { "scale-up" } else { "scale-down" }
                    ),
                )
            } else {
                let wanted = (new_ratio * f64::from(current)).ceil() as u32;
                (
                    wanted,
                    Some(mean),
                    if up { "scaleUp" } else { "scaleDown" },
                    format!(
                        "{missing} replica(s) without a metric counted as {}: ceil({current} × {} / {}) = {wanted}",
                        percent(filler),
                        percent(filled),
                        percent(policy.target)
                    ),
                )
            }
        }
    };
    // Stabilisation (HPA): up immediately; down only as far as the window's highest
    // recommendation allows.
    let mut desired = current;
    if recommendation > current {
        desired = recommendation;
    } else {
        let highest = window
            .iter()
            .copied()
            .chain([recommendation])
            .max()
            .unwrap_or(recommendation);
        if highest < current {
            desired = highest;
        }
        if highest > recommendation {
            rule = "stabilised";
            why.push_str(&format!(
                "; the scale-down window's highest recommendation is {highest}"
            ));
        }
    }
    let bounded = desired.clamp(
        policy.min_replicas,
        policy.max_replicas.max(policy.min_replicas),
    );
    if bounded != desired {
        rule = if bounded > desired {
            "clampedToMin"
        } else {
            "clampedToMax"
        };
        why.push_str(&format!(
            "; clamped to [{}, {}]",
            policy.min_replicas, policy.max_replicas
        ));
    }
    why.push_str(&format!(" → {bounded} replica(s)"));
    Decision {
        current_replicas: current,
        recommendation,
        desired_replicas: bounded,
        utilisation,
        rule,
        explanation: why,
    }
}

/// One decision with its scale-down stabilisation window: recommendations made longer than
/// `window` before `now` leave `history` (oldest first), the decision sees the rest, and its own
/// recommendation joins them. Returns the decision and the recommendations it saw.
pub fn step(
    history: &mut VecDeque<(Instant, u32)>,
    policy: &Policy,
    cpu: &[Option<f64>],
    now: Instant,
    window: Duration,
) -> (Decision, Vec<u32>) {
    while history
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) > window)
    {
        history.pop_front();
    }
    let seen: Vec<u32> = history.iter().map(|(_, r)| *r).collect();
    let decision = decide(policy, cpu, &seen);
    history.push_back((now, decision.recommendation));
    (decision, seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        target: 0.8,
        tolerance: 0.1,
        min_replicas: 1,
        max_replicas: 5,
    };

    #[test]
    fn hpa_cases() {
        let p = POLICY;
        let bounded = |min, max| Policy {
            min_replicas: min,
            max_replicas: max,
            ..POLICY
        };
        // (policy, per-replica cpu, window, desired, rule)
        type Case = (Policy, Vec<Option<f64>>, Vec<u32>, u32, &'static str);
        let cases: Vec<Case> = vec![
            // Within ±10 % of the target: no change (0.85/0.8 = 1.06).
            (
                p,
                vec![Some(0.85), Some(0.75)],
                vec![],
                2,
                "withinTolerance",
            ),
            // ceil(1 × 1.0 / 0.8) = 2.
            (p, vec![Some(1.0)], vec![], 2, "scaleUp"),
            // ceil(2 × 0.95 / 0.8) = 3.
            (p, vec![Some(0.9), Some(1.0)], vec![], 3, "scaleUp"),
            // ceil(3 × 0.1 / 0.8) = 1, with nothing in the window: down at once.
            (
                p,
                vec![Some(0.1), Some(0.1), Some(0.1)],
                vec![],
                1,
                "scaleDown",
            ),
            // The same with a window holding 3: held at 3.
            (
                p,
                vec![Some(0.1), Some(0.1), Some(0.1)],
                vec![3, 1],
                3,
                "stabilised",
            ),
            // A window holding 2 lets it go down to 2 only.
            (
                p,
                vec![Some(0.1), Some(0.1), Some(0.1)],
                vec![2],
                2,
                "stabilised",
            ),
            // Scale-up ignores the window.
            (p, vec![Some(1.0), Some(1.0)], vec![1], 3, "scaleUp"),
            // Bounds: ceil(4 × 1.0 / 0.8) = 5 > max 4.
            (bounded(1, 4), vec![Some(1.0); 4], vec![], 4, "clampedToMax"),
            // Idle but the manifest's replicas is the minimum.
            (
                bounded(2, 5),
                vec![Some(0.0), Some(0.0)],
                vec![],
                2,
                "clampedToMin",
            ),
            // No metrics at all: keep.
            (p, vec![None, None], vec![], 2, "noMetrics"),
            // Scale-up with a replica not ready: it counts as 0 %: (1.0+0)/2 = 0.5 → hold.
            (p, vec![Some(1.0), None], vec![], 2, "missingMetricsHold"),
            // Strong load on the known ones still scales up: (1.0+1.0+0)/3=0.67 → no: hold;
            // with 3 saturated and 1 missing: 0.75/0.8 = 0.94 → within band → hold.
            (
                p,
                vec![Some(1.0), Some(1.0), Some(1.0), None],
                vec![],
                4,
                "missingMetricsHold",
            ),
            // Scale-down with a missing replica: it counts as the target: (0.1+0.8)/2 = 0.45
            // → ceil(2 × 0.45 / 0.8) = 2 (no actual change, but the rule ran).
            (p, vec![Some(0.1), None], vec![], 2, "scaleDown"),
            // Scale-down with one missing of three: (0.1+0+0.8)/3 = 0.3 → ceil(3 × 0.375) = 2.
            (p, vec![Some(0.1), Some(0.0), None], vec![], 2, "scaleDown"),
        ];
        for (policy, cpu, window, desired, rule) in cases {
            let d = decide(&policy, &cpu, &window);
            assert_eq!(
                (d.desired_replicas, d.rule),
                (desired, rule),
                "{cpu:?} {window:?}: {}",
                d.explanation
            );
            assert!(d.explanation.ends_with(&format!("→ {desired} replica(s)")));
        }
    }

    #[test]
    fn the_window_forgets_what_is_older_than_it_and_holds_replicas_up_with_the_rest() {
        let now = Instant::now();
        let window = Duration::from_secs(300);
        let ago = |secs| now - Duration::from_secs(secs);
        // Two replicas nearly idle: the rule alone would go to 1.
        let idle = [Some(0.05), Some(0.05)];
        // (history before, recommendations seen, desired replicas)
        type Case = (Vec<(Instant, u32)>, Vec<u32>, u32);
        let cases: Vec<Case> = vec![
            (vec![], vec![], 1),
            // A recent higher recommendation holds the two (never more than there are).
            (vec![(ago(100), 4)], vec![4], 2),
            (vec![(ago(301), 1), (ago(10), 2)], vec![2], 2),
            // Ones older than the window no longer do.
            (vec![(ago(900), 5), (ago(400), 5)], vec![], 1),
        ];
        for (before, seen, desired) in cases {
            let mut history: VecDeque<(Instant, u32)> = before.clone().into();
            let (decision, saw) = step(&mut history, &POLICY, &idle, now, window);
            assert_eq!(saw, seen, "{before:?}");
            assert_eq!(decision.desired_replicas, desired, "{before:?}");
            assert_eq!(history.back(), Some(&(now, decision.recommendation)));
            assert_eq!(history.len(), seen.len() + 1);
        }
    }
}
