//! The scripted story of the flaky upstream: which phase it is in at each
//! moment of a run, and how it behaves there.
//!
//! The story is the same shape for every seed, scaled to the run's
//! duration:
//!
//! ```text
//! healthy → latency spike → healthy → error burst → outage → slow recovery → healthy
//! ```
//!
//! The seed moves the phase boundaries (by up to 1.5 % of the run each),
//! and picks how slow the spike is, how many calls the burst fails and how
//! bad the recovery starts. Everything here is a pure function of the seed
//! and the duration: the same `--seed` tells the same story.
//!
//! A [calm](Scenario::calm) story (`--calm`) is one healthy phase in which
//! the upstream never fails and never sheds load: next to a stormy storm
//! sharing its breaker through Redis, every refusal of its breaker is the
//! other process's doing.

use std::fmt;
use std::time::Duration;

/// What the upstream is going through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseKind {
    /// Fast answers, a rare error.
    Healthy,
    /// Answers take hundreds of milliseconds, some longer than a client's
    /// timeout.
    LatencySpike,
    /// A large share of the calls fail with `500`.
    ErrorBurst,
    /// Every call is answered `503` at once: the service is down.
    Outage,
    /// Errors and latency fade out while the capacity comes back; calls
    /// beyond the capacity are shed with `503`.
    Recovery,
}

impl PhaseKind {
    /// Whether the upstream is failing in this phase (burst, outage or
    /// recovery): calls it receives then mostly add to its trouble.
    pub const fn is_failing(self) -> bool {
        matches!(self, Self::ErrorBurst | Self::Outage | Self::Recovery)
    }

    /// A short name for the live display.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::LatencySpike => "latency spike",
            Self::ErrorBurst => "error burst",
            Self::Outage => "OUTAGE",
            Self::Recovery => "slow recovery",
        }
    }
}

impl fmt::Display for PhaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.label())
    }
}

/// One phase of the story: `start..end` from the start of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase {
    /// What happens.
    pub kind: PhaseKind,
    /// When it starts.
    pub start: Duration,
    /// When it ends (the next phase's start).
    pub end: Duration,
}

/// How the upstream behaves at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conditions {
    /// The phase.
    pub kind: PhaseKind,
    /// Service time range of a call (uniform).
    pub latency: (Duration, Duration),
    /// Chance that a call takes `tail_factor` times longer.
    pub tail_chance: f64,
    /// How much longer a tail call takes.
    pub tail_factor: u32,
    /// Chance that a call fails with `500`.
    pub error_rate: f64,
    /// Every call is answered `503` at once.
    pub down: bool,
    /// Share of the nominal capacity available (calls beyond it are shed).
    pub capacity: f64,
}

/// The story's template: each phase and its share of the run.
const TEMPLATE: [(PhaseKind, u32); 7] = [
    (PhaseKind::Healthy, 10),
    (PhaseKind::LatencySpike, 12),
    (PhaseKind::Healthy, 8),
    (PhaseKind::ErrorBurst, 12),
    (PhaseKind::Outage, 25),
    (PhaseKind::Recovery, 23),
    (PhaseKind::Healthy, 10),
];

/// The largest shift of a phase boundary, in thousandths of the run.
const MAX_SHIFT_PERMILLE: i64 = 15;

/// The whole story of one run; see the [module docs](self).
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    duration: Duration,
    phases: Vec<Phase>,
    spike_max: Duration,
    burst_error_rate: f64,
    recovery_error_rate: f64,
    calm: bool,
}

impl Scenario {
    /// A story without a storm: one healthy phase over `duration` in which
    /// no call fails, none takes more than 12 ms and none is shed.
    pub fn calm(duration: Duration) -> Self {
        Self {
            duration,
            phases: vec![Phase {
                kind: PhaseKind::Healthy,
                start: Duration::ZERO,
                end: duration,
            }],
            spike_max: Duration::ZERO,
            burst_error_rate: 0.0,
            recovery_error_rate: 0.0,
            calm: true,
        }
    }

    /// Whether this is a [calm](Self::calm) story.
    pub const fn is_calm(&self) -> bool {
        self.calm
    }

    /// The story told by `seed` over `duration`.
    pub fn new(seed: u64, duration: Duration) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let total = duration.as_micros().min(u128::from(u64::MAX)) as u64;
        let mut phases = Vec::with_capacity(TEMPLATE.len());
        let mut percent: u32 = 0;
        let mut start = Duration::ZERO;
        for (i, &(kind, share)) in TEMPLATE.iter().enumerate() {
            percent += share;
            let end = if i + 1 == TEMPLATE.len() {
                duration
            } else {
                let shift = rng.i64(-MAX_SHIFT_PERMILLE..=MAX_SHIFT_PERMILLE);
                // Shares are ≥ 8 % and shifts ≤ 1.5 %: boundaries stay in
                // order whatever the seed.
                let at = i64::from(percent) * 10 + shift;
                Duration::from_micros(total / 1000 * at.unsigned_abs())
            };
            phases.push(Phase { kind, start, end });
            start = end;
        }
        Self {
            duration,
            phases,
            spike_max: Duration::from_millis(rng.u64(250..=450)),
            burst_error_rate: f64::from(rng.u32(50..=70)) / 100.0,
            recovery_error_rate: f64::from(rng.u32(60..=80)) / 100.0,
            calm: false,
        }
    }

    /// The run's length.
    pub const fn duration(&self) -> Duration {
        self.duration
    }

    /// Every phase, in order; they tile `0..duration`.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// The phase at `t` from the start (the last one at or past the end).
    pub fn phase_at(&self, t: Duration) -> Phase {
        let last = self.phases[self.phases.len() - 1];
        self.phases
            .iter()
            .copied()
            .find(|p| t < p.end)
            .unwrap_or(last)
    }

    /// The outage window.
    pub fn outage(&self) -> Phase {
        self.phases
            .iter()
            .copied()
            .find(|p| p.kind == PhaseKind::Outage)
            .unwrap_or(Phase {
                kind: PhaseKind::Outage,
                start: self.duration,
                end: self.duration,
            })
    }

    /// How the upstream behaves at `t` from the start.
    pub fn conditions(&self, t: Duration) -> Conditions {
        let phase = self.phase_at(t);
        let healthy = Conditions {
            kind: phase.kind,
            latency: (Duration::from_millis(3), Duration::from_millis(12)),
            tail_chance: 0.01,
            tail_factor: 8,
            error_rate: 0.005,
            down: false,
            capacity: 1.0,
        };
        if self.calm {
            return Conditions {
                tail_chance: 0.0,
                tail_factor: 1,
                error_rate: 0.0,
                capacity: f64::INFINITY,
                ..healthy
            };
        }
        match phase.kind {
            PhaseKind::Healthy => healthy,
            PhaseKind::LatencySpike => Conditions {
                latency: (self.spike_max / 2, self.spike_max),
                tail_chance: 0.05,
                tail_factor: 4,
                error_rate: 0.02,
                ..healthy
            },
            PhaseKind::ErrorBurst => Conditions {
                error_rate: self.burst_error_rate,
                ..healthy
            },
            PhaseKind::Outage => Conditions {
                error_rate: 1.0,
                down: true,
                capacity: 0.0,
                ..healthy
            },
            PhaseKind::Recovery => {
                let len = phase.end.saturating_sub(phase.start).as_secs_f64();
                let done = if len > 0.0 {
                    (t.saturating_sub(phase.start).as_secs_f64() / len).min(1.0)
                } else {
                    1.0
                };
                let slow = 120.0 * (1.0 - done) + 12.0;
                Conditions {
                    latency: (
                        Duration::from_millis(5),
                        Duration::from_secs_f64(slow / 1000.0),
                    ),
                    error_rate: self.recovery_error_rate * (1.0 - done) + 0.01 * done,
                    capacity: 0.2 + 0.8 * done,
                    ..healthy
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_S: Duration = Duration::from_secs(10);

    #[test]
    fn the_same_seed_tells_the_same_story() {
        assert_eq!(Scenario::new(1, TEN_S), Scenario::new(1, TEN_S));
        let t = Duration::from_millis(7_100);
        assert_eq!(
            Scenario::new(9, TEN_S).conditions(t),
            Scenario::new(9, TEN_S).conditions(t)
        );
    }

    #[test]
    fn another_seed_moves_the_boundaries() {
        let stories: Vec<_> = (0..8).map(|seed| Scenario::new(seed, TEN_S)).collect();
        assert!(stories.iter().any(|s| s.phases() != stories[0].phases()));
    }

    #[test]
    fn phases_tile_the_run_in_the_story_order() {
        for seed in 0..200 {
            let s = Scenario::new(seed, TEN_S);
            let kinds: Vec<_> = s.phases().iter().map(|p| p.kind).collect();
            assert_eq!(kinds, TEMPLATE.map(|(k, _)| k));
            assert_eq!(s.phases()[0].start, Duration::ZERO);
            assert_eq!(s.phases().last().unwrap().end, TEN_S);
            for pair in s.phases().windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
                assert!(pair[0].start < pair[0].end, "seed {seed}: {pair:?}");
            }
            let outage = s.outage();
            let len = outage.end.saturating_sub(outage.start);
            assert!(len >= Duration::from_millis(2_200) && len <= Duration::from_millis(2_800));
        }
    }

    #[test]
    fn conditions_follow_the_phases() {
        let s = Scenario::new(1, TEN_S);
        let outage = s.outage();
        let inside = s.conditions(outage.start + Duration::from_millis(1));
        assert!(inside.down && inside.kind.is_failing());
        assert_eq!(s.conditions(Duration::ZERO).kind, PhaseKind::Healthy);
        assert!(!s.conditions(Duration::ZERO).down);
        assert_eq!(s.phase_at(TEN_S * 2).kind, PhaseKind::Healthy);
        let spike = s.phases()[1];
        assert!(s.conditions(spike.start).latency.0 >= Duration::from_millis(125));
    }

    #[test]
    fn recovery_fades_out() {
        let s = Scenario::new(3, TEN_S);
        let r = s.phases()[5];
        let early = s.conditions(r.start);
        let late = s.conditions(r.end.saturating_sub(Duration::from_millis(1)));
        assert!(early.error_rate > 0.5 && late.error_rate < 0.05);
        assert!(early.capacity < 0.25 && late.capacity > 0.95);
        assert!(early.latency.1 > late.latency.1);
    }

    #[test]
    fn a_calm_story_never_fails() {
        let s = Scenario::calm(TEN_S);
        assert!(s.is_calm() && !Scenario::new(1, TEN_S).is_calm());
        assert_eq!(s.phases().len(), 1);
        assert_eq!(s.outage().start, TEN_S, "no outage");
        for ms in (0..=12_000).step_by(250) {
            let c = s.conditions(Duration::from_millis(ms));
            assert_eq!(c.kind, PhaseKind::Healthy);
            assert!(!c.down && c.error_rate <= 0.0 && c.tail_chance <= 0.0);
            assert!(c.latency.1 <= Duration::from_millis(12) && c.capacity.is_infinite());
        }
    }

    #[test]
    fn a_short_run_is_the_same_story_scaled() {
        let long = Scenario::new(5, TEN_S);
        let short = Scenario::new(5, TEN_S / 4);
        for (l, s) in long.phases().iter().zip(short.phases()) {
            assert_eq!(l.kind, s.kind);
            let scaled = l.end.as_micros() / 4;
            assert!(scaled.abs_diff(s.end.as_micros()) <= 10, "{l:?} vs {s:?}");
        }
    }
}
