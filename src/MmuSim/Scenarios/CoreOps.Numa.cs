using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Scenarios;

/// <summary>
/// Scenario ops for NUMA placement (mm/migrate.c's move_pages, mm/mempolicy.c's mbind) on a machine of
/// <c>numa_nodes</c> nodes: <c>move-pages</c> queries or moves pages and checks the per-page status and the return
/// value as move_pages(2) gives them; <c>mbind</c> binds a range to a node and, with MPOL_MF_MOVE(_ALL), migrates
/// what is already there.
/// </summary>
public static partial class CoreOps
{
    static readonly string[] MoveFlagNames = ["move", "move_all"];
    static readonly string[] MbindFlagNames = ["none", "move", "move_all", "strict", "strict,move", "strict,move_all"];

    static void RegisterNuma(OpRegistry r)
    {
        r.Register(new OpSpec("move-pages",
            "move_pages(2) of `pages` pages from addr: to node (MPOL_MF_MOVE, or flags: move_all), or without node a query; " +
            "status (one node or errno per page, comma separated, or one for all) and ret (0, the count not migrated, or an errno) are checked when given",
            ["process", "addr"], ["pages", "node", "flags", "status", "ret"], DoMovePages) { Check = CheckMovePages });
        r.Register(new OpSpec("mbind",
            "mbind(addr, len, MPOL_BIND, {node}, flags): later allocations in the range come from node; flags move/move_all migrate the pages " +
            "already mapped (move: only those mapped once), strict makes a page left behind an EIO; expect is the errno (ok by default)",
            ["process", "addr", "len", "node"], ["flags", "expect"], DoMbind) { Check = CheckMbind });
    }

    static int NodeArg(OpArgs a) => (int)a.GetBounded("node", 0, PhysMem.MaxNodes - 1);

    static Migrate.MoveFlags MoveFlagsArg(OpArgs a) => a.GetString("flags", "move") switch
    {
        "move" => Migrate.MoveFlags.Move,
        "move_all" => Migrate.MoveFlags.MoveAll,
        var s => throw a.Error("flags", $"'{s}' is not a move_pages flag ({string.Join(", ", MoveFlagNames)})"),
    };

    /// <summary>The expected status list: a node number or an errno name per page (one value stands for every page).</summary>
    static int[] StatusArg(OpArgs a, int pages)
    {
        var parts = a.GetString("status").Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 1 && parts.Length != pages)
            throw a.Error("status", $"{parts.Length} values for {pages} pages (give one per page, or one for all)");
        var want = new int[pages];
        for (int i = 0; i < pages; i++)
        {
            var p = parts[parts.Length == 1 ? 0 : i];
            if (int.TryParse(p, out int node) && node >= 0 && node < PhysMem.MaxNodes) want[i] = node;
            else if (Errno.TryParse(p, out int e) && e < 0) want[i] = e;
            else throw a.Error("status", $"'{p}' is neither a node (0..{PhysMem.MaxNodes - 1}) nor an errno ({Errno.KnownList})");
        }
        return want;
    }

    /// <summary>move_pages' return value: a count of pages not migrated, or an errno name.</summary>
    static int RetArg(OpArgs a)
    {
        var s = a.GetString("ret");
        if (int.TryParse(s, out int n) && n >= 0 && n <= ScenarioLimits.MaxContentPages) return n;
        return Errno.TryParse(s, out int e) && e <= 0 ? e
            : throw a.Error("ret", $"'{s}' is neither a page count (0..{ScenarioLimits.MaxContentPages}) nor an errno ({Errno.KnownList})");
    }

    static void CheckMovePages(OpArgs a, ScenarioInfo i)
    {
        i.RequireMapped(a);
        int pages = (int)a.GetBounded("pages", 1, ScenarioLimits.MaxContentPages, 1);
        if (a.Has("node")) NodeArg(a);
        else if (a.Has("flags")) throw a.Error("flags", "a query (no node) takes no flags");
        MoveFlagsArg(a);
        if (a.Has("status")) StatusArg(a, pages);
        if (a.Has("ret")) RetArg(a);
    }

    static string StatusName(int s) => s == int.MinValue ? "unset" : s >= 0 ? s.ToString() : Errno.NameOf(s);

    static async ValueTask DoMovePages(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr");
        int n = (int)a.GetBounded("pages", 1, ScenarioLimits.MaxContentPages, 1);
        var pages = new ulong[n];
        for (int i = 0; i < n; i++) pages[i] = addr + (ulong)i * MmStruct.PageSize;
        int[]? nodes = null;
        if (a.Has("node"))
        {
            nodes = new int[n];
            Array.Fill(nodes, NodeArg(a));
        }
        var (ret, status) = await Migrate.MovePages(mm, pages, nodes, MoveFlagsArg(a));
        if (a.Has("ret") && RetArg(a) is var wantRet && wantRet != ret)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: move_pages at 0x{addr:x} returned {(ret < 0 ? Errno.NameOf(ret) : ret)}, expected {(wantRet < 0 ? Errno.NameOf(wantRet) : wantRet)}", addr);
        if (!a.Has("status")) return;
        var want = StatusArg(a, n);
        for (int i = 0; i < n; i++)
            if (status[i] != want[i])
            {
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                    $"{a.File}:{a.Line}: move_pages status of 0x{pages[i]:x} is {StatusName(status[i])}, expected {StatusName(want[i])}", pages[i]);
                return;
            }
    }

    static void CheckMbind(OpArgs a, ScenarioInfo i)
    {
        i.RequireMapped(a);
        NodeArg(a);
        ulong len = a.GetULong("len");
        if (len == 0 || (len & ~MmStruct.PageMask) != 0) throw a.Error("len", $"{len} is not a positive multiple of the page size");
        MbindFlagsArg(a);
        a.GetErrno("expect");
    }

    static (bool Move, bool All, bool Strict) MbindFlagsArg(OpArgs a)
    {
        var s = a.GetString("flags", "none");
        if (Array.IndexOf(MbindFlagNames, s) < 0)
            throw a.Error("flags", $"'{s}' is not an mbind flag set ({string.Join(", ", MbindFlagNames)})");
        return (s.Contains("move"), s.Contains("move_all"), s.Contains("strict"));
    }

    static async ValueTask DoMbind(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr"), len = a.GetULong("len");
        var (move, all, strict) = MbindFlagsArg(a);
        int err = await Mempolicy.DoMbind(mm, addr, len, NodeArg(a), move, all, strict);
        int want = a.GetErrno("expect");
        if (err != want)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: mbind of [0x{addr:x}, 0x{addr + len:x}) returned {Errno.NameOf(err)}, expected {Errno.NameOf(want)}", addr);
    }
}
