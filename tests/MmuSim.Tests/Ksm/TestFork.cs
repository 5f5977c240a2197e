using MmuSim.Ksm;
using MmuSim.Mm;

namespace MmuSim.Tests.Ksm;

/// <summary>
/// Test-only stand-in for fork (dup_mmap + copy_page_range of private anonymous VMAs) until Mm/Fork.cs lands on main:
/// the child joins the parent's anon_vma families, every present PTE is shared write-protected (COW), refcount and
/// mapcount are raised, and ksm_fork registers the child with KSM. No notifiers (the tests here do not record them).
/// </summary>
static class TestFork
{
    public static MmStruct Fork(Kernel k, MmStruct parent, string name)
    {
        var child = k.CreateMm(name);
        foreach (var v in parent.Vmas)
        {
            var cv = child.InsertVma(new Vma(child, v.Start, v.End, v.Prot, v.Flags) { PgOff = v.PgOff, AnonVma = v.AnonVma, Name = v.Name });
            if (v.AnonVma != null && !v.AnonVma.Members.Contains(child)) v.AnonVma.Members.Add(child);
            for (ulong va = v.Start; va < v.End; va += MmStruct.PageSize)
            {
                var pte = parent.PeekPte(va);
                if (!pte.Present) continue;
                if (v.IsCowMapping && pte.Writable)
                {
                    pte = pte.Wrprotect();
                    k.PageTables.Entry(parent.PteTable(va), PageTablePool.PteIndex(va)) = pte.Raw;
                }
                int t = child.PteAlloc(va);
                k.PageTables.Entry(t, PageTablePool.PteIndex(va)) = pte.Raw;
                if (pte.Special || pte.Pfn == PhysMem.ZeroPfn) continue;
                Folio.Get(k, pte.Pfn);
                Folio.AddAnonRmap(k, pte.Pfn, child);
                k.Mem[pte.Pfn].Clear(PageFlags.AnonExclusive);
            }
            _ = cv;
        }
        Ksmd.Of(k).KsmFork(parent, child);
        return child;
    }
}
