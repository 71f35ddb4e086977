using ActorSeg.Core.Graph;
using Xunit;

namespace ActorSeg.Tests.Unit;

/// <summary>The stitch's boundary sums: records summed per pair of mapped ids by one sort give what a running sum per
/// pair gives, whatever the order of the records, with inner boundaries left out and the pairs in (a, b) order.</summary>
public class BoundaryRecordsTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 2)]
    [InlineData(2, 3)]
    public void SumsPerMappedPair_EqualARunningSumPerPair_InAnyOrder(int channels, int seed)
    {
        var rnd = new Random(seed);
        int ids = 400, nodes = 90;
        var map = Enumerable.Range(0, ids).Select(_ => rnd.Next(nodes)).ToArray();
        var records = Enumerable.Range(0, 5000).Select(_ =>
        {
            int a = rnd.Next(ids), b = rnd.Next(ids);
            return (a, b, len: (long)rnd.Next(1, 50), diff: Enumerable.Range(0, channels).Select(_ => (long)rnd.Next(0, 100_000)).ToArray());
        }).Where(r => r.a != r.b).ToList();
        // the reference: a running sum per unordered pair of nodes
        var want = new SortedDictionary<(int, int), (long Len, long[] Diff)>();
        foreach (var (a, b, len, diff) in records)
        {
            int x = Math.Min(map[a], map[b]), y = Math.Max(map[a], map[b]);
            if (x == y) continue;
            if (!want.TryGetValue((x, y), out var cur)) cur = (0, new long[channels]);
            for (int c = 0; c < channels; c++) cur.Diff[c] += diff[c];
            want[(x, y)] = (cur.Len + len, cur.Diff);
        }
        Assert.True(want.Count > 100);
        foreach (var order in new[] { records, records.AsEnumerable().Reverse().ToList(), records.OrderBy(_ => rnd.Next()).ToList() })
        {
            var br = new BoundaryRecords(channels, capacity: 16); // grows on the way
            foreach (var (a, b, len, diff) in order) br.Add(a, b, len, diff);
            Assert.Equal(order.Count, br.Count);
            var got = br.SumByPair(map);
            Assert.Equal(want.Keys.Select(k => k.Item1).ToArray(), got.A);
            Assert.Equal(want.Keys.Select(k => k.Item2).ToArray(), got.B);
            Assert.Equal(want.Values.Select(v => v.Len).ToArray(), got.Length);
            Assert.Equal(want.Values.SelectMany(v => v.Diff).ToArray(), got.Diff);
        }
    }
}
