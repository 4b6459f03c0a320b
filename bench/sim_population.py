"""A seeded model of a volunteer host population for the virtual-time simulator.

Speed, cores, fault rates and on/off availability of each host, from published models of
SETI@home/BOINC hosts where we found numbers and from constants marked "chosen" where we did
not; docs/simulator-hosts.md gives each distribution, its parameters and its source. Cheap per
draw, since the simulator makes 100,000 hosts and draws millions of intervals.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from dataclasses import dataclass

KINDS = ("honest", "erring", "random", "colluding")
_FAULTY = KINDS[1:]

HOUR = 3600.0
MIN_INTERVAL_S = 60.0  # chosen: shorter flaps mean nothing to a client that calls in hourly
MAX_INTERVAL_S = 30 * 24 * HOUR  # chosen: the log-normal off tail would otherwise reach years

# Host hardware, all chosen, not fitted (see the doc): log-normal per-core speed (the family
# Heien et al. found for processor speed), a discrete core count, independent of each other.
FLOPS_MEDIAN = 3.5e9
FLOPS_SIGMA = 0.45
FLOPS_RANGE = (0.3e9, 20e9)
CORE_SHARES = ((1, 0.08), (2, 0.22), (4, 0.34), (6, 0.08), (8, 0.17), (12, 0.04), (16, 0.05), (32, 0.02))

# Fault rates, chosen, not fitted: a host's client-error rate is exponential across hosts.
CLIENT_ERROR_MEAN = 0.02
ERRING_ERROR_MEAN = 0.10
ERRING_WRONG_RANGE = (0.01, 0.10)
MAX_ERROR_RATE = 0.5


_RNG_METHOD = {"weibull": "weibullvariate", "lognormal": "lognormvariate", "gamma": "gammavariate"}


@dataclass(frozen=True, slots=True)
class Dist:
    """Interval lengths in hours, as the papers give them: weibull and gamma take a = shape,
    b = scale; lognormal takes a = mu, b = sigma of ln(hours)."""

    family: str
    a: float
    b: float

    def __post_init__(self) -> None:
        if self.family not in _RNG_METHOD:
            raise ValueError(f"unknown distribution family {self.family!r}")


@dataclass(frozen=True, slots=True)
class AvailabilityClass:
    name: str
    share: float  # of all hosts
    on: Dist
    off: Dist


AVAILABILITY_CLASSES = (
    # Fitted: SETI@home hosts with truly random availability (Javadi et al.; 21% of hosts),
    # parameters as ComBoS ships them.
    AvailabilityClass("seti-random", 0.21, Dist("weibull", 0.393, 2.964), Dist("lognormal", -0.586, 2.844)),
    # Chosen, not fitted: always-on machines with short breaks, and machines on part of each day.
    AvailabilityClass("steady", 0.39, Dist("weibull", 0.7, 48.0), Dist("lognormal", 0.0, 1.2)),
    AvailabilityClass("part-time", 0.40, Dist("gamma", 2.0, 4.5), Dist("lognormal", math.log(12.0), 0.7)),
)


@dataclass(frozen=True)
class Mix:
    """Shares of the faulty kinds; honest hosts are the remainder."""

    erring: float = 0.05  # honest but faulty: sometimes a wrong or failed result
    random: float = 0.02  # random cheaters: garbage, fast
    colluding: float = 0.02  # colluders: the same agreed wrong answer as each other

    def __post_init__(self) -> None:
        for kind in _FAULTY:
            share = getattr(self, kind)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"share of {kind} must be between 0 and 1, got {share}")
        if self.erring + self.random + self.colluding > 1.0 + 1e-9:
            raise ValueError(f"shares add up to more than 1: {self.erring + self.random + self.colluding:g}")

    @classmethod
    def parse(cls, text: str) -> Mix:
        """Read "erring=0.05,random=0.02,colluding=0.02"; kinds not named get a share of 0."""
        shares: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, sep, value = (s.strip() for s in part.partition("="))
            if not sep:
                raise ValueError(f"mix entry {part!r} is not kind=share, e.g. random=0.02")
            if name not in _FAULTY:
                raise ValueError(f"unknown kind {name!r}: use erring, random, colluding (honest is the rest)")
            if name in shares:
                raise ValueError(f"kind {name!r} named twice in mix")
            try:
                shares[name] = float(value)
            except ValueError:
                raise ValueError(f"share of {name} is not a number: {value!r}") from None
        if not shares:
            raise ValueError("empty mix; write e.g. erring=0.05,random=0.02,colluding=0.02")
        return cls(**{kind: shares.get(kind, 0.0) for kind in _FAULTY})

    def shares(self) -> tuple[float, float, float, float]:
        """Shares in KINDS order."""
        honest = max(0.0, 1.0 - self.erring - self.random - self.colluding)
        return (honest, self.erring, self.random, self.colluding)


@dataclass(frozen=True, slots=True)
class HostSpec:
    index: int
    kind: str  # one of KINDS
    flops: float  # per core, floating-point operations per second
    cores: int
    error_rate: float  # chance a task ends in a client error
    wrong_rate: float  # chance an otherwise successful result is wrong
    availability_class: int  # index into AVAILABILITY_CLASSES


_FLOPS_MU = math.log(FLOPS_MEDIAN)
_WRONG_RATE = {"honest": 0.0, "random": 1.0, "colluding": 1.0}
_CLASS_SHARES = tuple(c.share for c in AVAILABILITY_CLASSES)
_CORE_COUNTS = tuple(c for c, _ in CORE_SHARES)
_CORE_CUMULATIVE = tuple(sum(s for _, s in CORE_SHARES[: i + 1]) for i in range(len(CORE_SHARES) - 1))


def population(count: int, *, seed: int, mix: Mix) -> list[HostSpec]:
    """`count` hosts, the same for the same seed and mix. Kinds and availability classes are
    dealt in exact quotas, then shuffled; hardware has a stream of its own, so changing only
    the mix changes who cheats, not the machines."""
    if count < 0:
        raise ValueError(f"host count must not be negative, got {count}")
    kinds = _deal(random.Random(f"{seed}:kinds"), count, KINDS, mix.shares())
    classes = _deal(random.Random(f"{seed}:classes"), count, range(len(_CLASS_SHARES)), _CLASS_SHARES)
    rng = random.Random(f"{seed}:hosts")
    return [_host(rng, i, kinds[i], classes[i]) for i in range(count)]


def _deal(rng: random.Random, count: int, labels, shares) -> list:
    """Labels in largest-remainder quotas of `count`, in a seeded random order."""
    labels = list(labels)
    raw = [count * s / sum(shares) for s in shares]
    quotas = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: raw[i] - quotas[i], reverse=True)
    for i in by_remainder[: max(0, count - sum(quotas))]:
        quotas[i] += 1
    dealt = [label for label, quota in zip(labels, quotas, strict=True) for _ in range(quota)]
    rng.shuffle(dealt)
    return dealt


def _host(rng: random.Random, index: int, kind: str, klass: int) -> HostSpec:
    """One host; the same number of draws for every kind keeps the streams aligned across mixes."""
    flops = min(FLOPS_RANGE[1], max(FLOPS_RANGE[0], rng.lognormvariate(_FLOPS_MU, FLOPS_SIGMA)))
    cores = _CORE_COUNTS[bisect(_CORE_CUMULATIVE, rng.random())]
    erring = kind == "erring"
    error_mean = ERRING_ERROR_MEAN if erring else CLIENT_ERROR_MEAN
    error_rate = min(MAX_ERROR_RATE, rng.expovariate(1.0) * error_mean)
    wrong = rng.uniform(*ERRING_WRONG_RANGE)
    return HostSpec(index, kind, flops, cores, error_rate, wrong if erring else _WRONG_RATE[kind], klass)


def _in_seconds(d: Dist) -> tuple[str, float, float]:
    """The random.Random method and its two arguments that draw `d` in seconds."""
    if d.family == "weibull":
        return _RNG_METHOD[d.family], d.b * HOUR, d.a  # weibullvariate(scale, shape)
    if d.family == "lognormal":
        return _RNG_METHOD[d.family], d.a + math.log(HOUR), d.b
    return _RNG_METHOD[d.family], d.a, d.b * HOUR  # gammavariate(shape, scale)


class Availability:
    """On/off intervals of one host, drawn from its class's fitted distributions."""

    __slots__ = ("_index", "_klass", "_off", "_off_a", "_off_b", "_on", "_on_a", "_on_b", "_rng")

    def __init__(self, spec: HostSpec, rng: random.Random) -> None:
        self._rng = rng
        self._index = spec.availability_class
        self._klass = AVAILABILITY_CLASSES[self._index]
        on_name, self._on_a, self._on_b = _in_seconds(self._klass.on)
        off_name, self._off_a, self._off_b = _in_seconds(self._klass.off)
        self._on = getattr(rng, on_name)
        self._off = getattr(rng, off_name)

    def first_state(self) -> tuple[bool, float]:
        """(on now, seconds until it changes), as if the host had always been running: the
        interval covering a random instant is length-biased, and a uniform share of it is left."""
        on = self._rng.random() < _ON_FRACTION[self._index]
        length = self._covering_interval(self._klass.on if on else self._klass.off)
        return on, (1.0 - self._rng.random()) * length

    def next_interval(self, on: bool) -> float:
        """Seconds of the next on (True) or off (False) interval, within the floor and cap."""
        x = self._on(self._on_a, self._on_b) if on else self._off(self._off_a, self._off_b)
        return MIN_INTERVAL_S if x < MIN_INTERVAL_S else (MAX_INTERVAL_S if x > MAX_INTERVAL_S else x)

    def _covering_interval(self, d: Dist) -> float:
        """A length-biased draw of the capped interval: above the cap, keep it with odds cap/x."""
        rng, cap = self._rng, MAX_INTERVAL_S
        while True:
            if d.family == "weibull":  # length-biased Weibull: (x/scale)^shape ~ Gamma(1 + 1/shape)
                x = d.b * HOUR * rng.gammavariate(1.0 + 1.0 / d.a, 1.0) ** (1.0 / d.a)
            elif d.family == "lognormal":
                x = rng.lognormvariate(d.a + math.log(HOUR) + d.b * d.b, d.b)
            else:
                x = rng.gammavariate(d.a + 1.0, d.b * HOUR)
            if x < cap:
                return max(x, MIN_INTERVAL_S)
            if rng.random() * x < cap:
                return cap


def mean_on_fraction(spec: HostSpec) -> float:
    """The long-run share of time the host's class is on, for the "ideal makespan" figure."""
    return _ON_FRACTION[spec.availability_class]


def capped_mean_hours(d: Dist, cap_hours: float = MAX_INTERVAL_S / HOUR) -> float:
    """E[min(X, cap)] in hours; the floor is left out (it moves the mean by under 0.1%)."""
    if d.family == "weibull":
        return d.b * math.gamma(1.0 + 1.0 / d.a) * _gamma_p(1.0 / d.a, (cap_hours / d.b) ** d.a)
    if d.family == "gamma":
        x = cap_hours / d.b
        return d.a * d.b * _gamma_p(d.a + 1.0, x) + cap_hours * (1.0 - _gamma_p(d.a, x))
    z = (math.log(cap_hours) - d.a) / d.b  # log-normal; Phi(t) = erfc(-t / sqrt 2) / 2
    below = math.exp(d.a + d.b * d.b / 2.0) * math.erfc((d.b - z) / math.sqrt(2.0))
    return (below + cap_hours * math.erfc(z / math.sqrt(2.0))) / 2.0


def _gamma_p(a: float, x: float) -> float:
    """The regularized lower incomplete gamma function P(a, x), by its power series."""
    if x > a + 60.0 + 10.0 * math.sqrt(a):  # the upper tail is below 1e-25 here
        return 1.0
    term = total = 1.0 / a
    n = 0
    while term > total * 1e-17:
        n += 1
        term *= x / (a + n)
        total += term
    return min(1.0, total * math.exp(a * math.log(x) - x - math.lgamma(a)))


_MEANS = [(capped_mean_hours(k.on), capped_mean_hours(k.off)) for k in AVAILABILITY_CLASSES]
_ON_FRACTION = tuple(on / (on + off) for on, off in _MEANS)
