using MmuSim.Experiments;

namespace MmuSim.Tests.Experiments;

public class ExprTests
{
    static readonly Dictionary<string, double> Vars = new() { ["gib"] = 2, ["merged"] = 0.25, ["pages"] = 16384 };

    [Theory]
    [InlineData("1 + 2 * 3", 7)]
    [InlineData("(1 + 2) * 3", 9)]
    [InlineData("floor(pages * merged)", 4096)]
    [InlineData("pages / 262144", 0.0625)]
    [InlineData("0x100000 + 3", 1048579)]
    [InlineData("-gib + max(1, 5, 3) % 4", -1)]
    [InlineData("gib == 2", 1)]
    [InlineData("gib >= 3", 0)]
    [InlineData("merged < 0.5", 1)]
    [InlineData("ceil(10 / 4)", 3)]
    public void Evaluates(string text, double expected) => Assert.Equal(expected, Expr.Eval(text, Vars), 9);

    [Theory]
    [InlineData("gib * ram", "unknown name 'ram'")]
    [InlineData("1 / 0", "division by zero")]
    [InlineData("(1 + 2", "missing ')'")]
    [InlineData("2 $ 3", "unexpected '$'")]
    [InlineData("sqrt(4)", "unknown function sqrt/1")]
    public void Rejects(string text, string message) =>
        Assert.Contains(message, Assert.Throws<ExprException>(() => Expr.Eval(text, Vars)).Message);

    [Fact]
    public void FormatsIntegersWithoutAPoint()
    {
        Assert.Equal("16384", Expr.Format(16384.0));
        Assert.Equal("0.25", Expr.Format(0.25));
    }
}
