namespace MmuSim.Sched;

/// <summary>Uniform random walk: at every point, any runnable context is equally likely to run next.</summary>
public sealed class RandomStrategy(ulong seed) : IStrategy
{
    Rng _rng = new(seed);
    readonly ulong _seed = seed;

    public string Name => "random";

    public void BeginRun(int iteration) => _rng = new Rng(Rng.Mix(_seed, (ulong)iteration));

    public int Next(in Decision d) => d.Runnable[_rng.Below(d.Runnable.Length)];

    public int NextInt(int bound) => _rng.Below(bound);
}

/// <summary>
/// Random walk that switches rarely: keeps the current context with probability 1 - p. Finds bugs that need a
/// long uninterrupted run on one CPU followed by a switch at one exact step.
/// </summary>
public sealed class ProbabilisticRandomStrategy(ulong seed, double switchProbability) : IStrategy
{
    Rng _rng = new(seed);
    readonly ulong _seed = seed;
    readonly uint _threshold = (uint)(switchProbability * uint.MaxValue);

    public string Name => "prob-random";

    public void BeginRun(int iteration) => _rng = new Rng(Rng.Mix(_seed, (ulong)iteration));

    public int Next(in Decision d)
    {
        if (d.Current >= 0 && _rng.NextUInt() > _threshold) return d.Current;
        return d.Runnable[_rng.Below(d.Runnable.Length)];
    }

    public int NextInt(int bound) => _rng.Below(bound);
}

/// <summary>
/// Replays a recorded <see cref="DecisionLog"/>. When the recorded choice is not runnable, the run has diverged
/// (different model version or scenario) and <see cref="Diverged"/> is set; the first runnable context is used.
/// When the log is exhausted, falls back to a strategy (default: keep the current context, then lowest id).
/// </summary>
public sealed class ReplayStrategy(IReadOnlyList<(byte Kind, int Value)> entries, IStrategy? fallback = null) : IStrategy
{
    int _pos;

    public string Name => "replay";

    public bool Diverged { get; private set; }

    public int Position => _pos;

    public void BeginRun(int iteration)
    {
        _pos = 0;
        Diverged = false;
        fallback?.BeginRun(iteration);
    }

    public int Next(in Decision d)
    {
        if (_pos < entries.Count)
        {
            var (kind, v) = entries[_pos++];
            if (kind == DecisionLog.SchedKind && d.Runnable.Contains(v)) return v;
            Diverged = true;
        }
        if (fallback != null) return fallback.Next(d);
        return d.Current >= 0 ? d.Current : d.Runnable[0];
    }

    public int NextInt(int bound)
    {
        if (_pos < entries.Count)
        {
            var (kind, v) = entries[_pos++];
            if (kind == DecisionLog.DataKind && v < bound) return v;
            Diverged = true;
        }
        return fallback?.NextInt(bound) ?? 0;
    }
}

/// <summary>Deterministic time slicing for plain simulation: switch to the next runnable context every quantum steps.</summary>
public sealed class RoundRobinStrategy(int quantum) : IStrategy
{
    long _lastSwitch;

    public string Name => "round-robin";

    public void BeginRun(int iteration) => _lastSwitch = 0;

    public int Next(in Decision d)
    {
        if (d.Current >= 0 && d.Step - _lastSwitch < quantum) return d.Current;
        _lastSwitch = d.Step;
        foreach (var id in d.Runnable)
            if (id > d.Current) return id;
        return d.Runnable[0];
    }

    public int NextInt(int bound) => 0;
}

/// <summary>SplitMix64-seeded xoshiro256** generator: fast, allocation-free and identical on every platform.</summary>
public struct Rng
{
    ulong _s0, _s1, _s2, _s3;

    public Rng(ulong seed)
    {
        _s0 = SplitMix(ref seed);
        _s1 = SplitMix(ref seed);
        _s2 = SplitMix(ref seed);
        _s3 = SplitMix(ref seed);
    }

    static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Derive an independent seed (used per iteration and per shard).</summary>
    public static ulong Mix(ulong a, ulong b)
    {
        ulong x = a ^ (b * 0x9E3779B97F4A7C15UL);
        return SplitMix(ref x);
    }

    public ulong NextULong()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    public uint NextUInt() => (uint)(NextULong() >> 32);

    /// <summary>Uniform in [0, bound) (Lemire's multiply-shift; bias below 2^-32 for the bounds we use).</summary>
    public int Below(int bound) => (int)(((ulong)NextUInt() * (uint)bound) >> 32);

    public double NextDouble() => (NextULong() >> 11) * (1.0 / (1UL << 53));
}
