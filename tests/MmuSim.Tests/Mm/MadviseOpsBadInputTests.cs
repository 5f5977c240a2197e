namespace MmuSim.Tests.Mm;

/// <summary>The madvise errno advice and the khugepaged op reject bad fields with file:line: field: message, exit 2.</summary>
public class MadviseOpsBadInputTests
{
    [Theory]
    [InlineData("madvise: { addr: 0x100000, len: 4K, advice: populate_read, expect: enotanerrno }", "madvise.expect", "is not an errno")]
    [InlineData("madvise: { addr: 0x100000, len: 4K, advice: dontneed, expect: einval }", "madvise.expect", "reports no errno")]
    [InlineData("madvise: { addr: 0x100000, len: 4K, advice: populate }", "madvise.advice", "unknown or not yet modelled advice")]
    [InlineData("madvise: { addr: 0x100001, len: 4K, advice: collapse }", "madvise.addr", "not page aligned")]
    [InlineData("madvise: { addr: 0x100000, len: many, advice: wipeonfork }", "madvise.len", "not a number")]
    [InlineData("madvise: { addr: 0x100000, len: 0x7ffffff01000, advice: populate_write }", "madvise.len", "past the 47-bit")]
    [InlineData("khugepaged: { addr: 0x101000 }", "khugepaged.addr", "not 2 MiB aligned")]
    [InlineData("khugepaged: { addr: 0x200000, expect: maybe }", "khugepaged.expect", "not a khugepaged outcome")]
    public void BadFields_ExitTwoWithOneLine(string op, string field, string message) =>
        Cli.CliRunner.AssertBadInput(Cli.CliRunner.MinimalScenario.Replace("read: { addr: 0x100000 }", op), 10, field, message);
}
