using System.Diagnostics;
using ActorSeg.Core.Imaging;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.IO;

/// <summary>
/// The TIFF pages ActorSeg decodes itself (tiled, chunky, 8/16-bit unsigned, deflate or none, with or without the
/// predictor, either byte order, classic or BigTIFF) read exactly the samples libvips reads, in every region; the pages it
/// does not handle are left to libvips; and a damaged tile fails naming the file and the tile. The files come from
/// tifffile, the writer many microscopy tools use, so they are not our own writer's idea of a TIFF.
/// </summary>
public class TiffTilesTests(ITestOutputHelper output) : TempDirTest("tifftiles")
{
    private const string Writer = """
        import sys, numpy as np, tifffile
        d = sys.argv[1]
        rng = np.random.default_rng(7)
        def img(shape, dtype):
            # smooth ramps plus noise: the predictor has something to do, and values use the whole range
            hi = 255 if dtype == np.uint8 else 65535
            y, x = np.mgrid[0:shape[0], 0:shape[1]]
            base = (x * 37 + y * 11) % (hi + 1)
            if len(shape) == 3: base = np.stack([(base + 97 * c) % (hi + 1) for c in range(shape[2])], axis=-1)
            return ((base + rng.integers(0, 40, size=shape)) % (hi + 1)).astype(dtype)
        H, W = 97, 150
        def w(name, data, **kw): tifffile.imwrite(f'{d}/{name}.tif', data, **kw)
        w('g8-zlib-pred', img((H, W), np.uint8), tile=(32, 32), compression='zlib', predictor=True)
        w('g8-deflate', img((H, W), np.uint8), tile=(32, 48), compression='deflate')
        w('g16-be-pred', img((H, W), np.uint16), tile=(32, 32), compression='zlib', predictor=True, byteorder='>')
        w('g16-none', img((H, W), np.uint16), tile=(16, 64))
        w('g16-le-big', img((H, W), np.uint16), tile=(64, 32), compression='zlib', predictor=True, bigtiff=True)
        w('rgb8-pred', img((H, W, 3), np.uint8), tile=(32, 32), compression='zlib', predictor=True, photometric='rgb')
        w('rgb16-be-big', img((H, W, 3), np.uint16), tile=(32, 32), compression='zlib', predictor=True, photometric='rgb', byteorder='>', bigtiff=True)
        w('rgb16-none', img((H, W, 3), np.uint16), tile=(16, 64), photometric='rgb')
        w('rgb8-deflate', img((H, W, 3), np.uint8), tile=(32, 48), compression='deflate', photometric='rgb')
        w('rgba8', img((H, W, 4), np.uint8), tile=(32, 32), compression='zlib', photometric='rgb', extrasamples=['unassalpha'])
        w('ga16', img((H, W, 2), np.uint16), tile=(32, 32), compression='zlib', predictor=True, photometric='minisblack', planarconfig='contig', extrasamples=['unassalpha'])
        # signed samples, and the same values shifted into the unsigned range
        s16 = (img((H, W), np.uint16).astype(np.int32) // 8 - 4000).astype(np.int16)
        w('s16', s16, tile=(32, 32), compression='zlib')
        w('s16-shifted', (s16.astype(np.int32) + 32768).astype(np.uint16), tile=(32, 32), compression='zlib')
        s8 = (img((H, W), np.uint8).astype(np.int16) - 128).astype(np.int8)
        w('s8', s8, tile=(32, 32))
        w('s8-shifted', (s8.astype(np.int16) + 128).astype(np.uint8), tile=(32, 32))
        # label masks as skimage, StarDist or Cellpose write them: int32 labels (one above 65535, one negative), and the binary mask they mean
        yy, xx = np.mgrid[0:H, 0:W]
        labels = np.zeros((H, W), np.int32)
        labels[10:40, 10:50] = 1; labels[50:90, 60:100] = 70000; labels[20:30, 110:140] = -1; labels[60:80, 120:145] = 300
        w('labels32', labels, tile=(32, 32), compression='zlib')
        w('labels-binary', (labels != 0).astype(np.uint8), tile=(32, 32))
        # fluorescence channels beyond the first: extra samples left unspecified are data, not alpha
        w('c4', img((H, W, 4), np.uint16), tile=(32, 32), compression='zlib', predictor=True, photometric='minisblack', planarconfig='contig')
        w('c2', img((H, W, 2), np.uint8), tile=(32, 32), compression='zlib', photometric='minisblack', planarconfig='contig')
        # the same channels as an OME-TIFF, one grey page per plane: channels fastest (XYCZT), focal planes fastest (XYZCT)
        c3 = img((H, W, 3), np.uint16)
        w('c3', c3, tile=(32, 32), compression='zlib', photometric='minisblack', planarconfig='contig')
        cyx = np.moveaxis(c3, -1, 0).copy()
        tifffile.imwrite(f'{d}/ome-c.ome.tif', cyx, ome=True, metadata={'axes': 'CYX', 'PhysicalSizeX': 0.325, 'PhysicalSizeY': 0.325}, photometric='minisblack', tile=(32, 32), compression='zlib')
        czyx = np.stack([cyx, cyx[::-1]], 1)
        tifffile.imwrite(f'{d}/ome-cz.ome.tif', czyx, ome=True, metadata={'axes': 'CZYX'}, photometric='minisblack', tile=(32, 32))
        tifffile.imwrite(f'{d}/ome-zc.ome.tif', np.moveaxis(czyx, 0, 1).copy(), ome=True, metadata={'axes': 'ZCYX'}, photometric='minisblack', tile=(32, 32))
        # the same channels as a multi-file set, one file per channel (as Bio-Formats and Micro-Manager split them), each
        # file with the whole OME-XML, whose TiffData name their files in UUID elements
        uu = ['urn:uuid:%08d-0000-4000-8000-000000000000' % c for c in range(3)]
        tds = ''.join(f'<TiffData FirstC="{c}" FirstZ="0" FirstT="0" IFD="0" PlaneCount="1"><UUID FileName="set_C{c}.ome.tif">{uu[c]}</UUID></TiffData>' for c in range(3))
        chans = ''.join(f'<Channel ID="Channel:0:{c}" SamplesPerPixel="1"/>' for c in range(3))
        for c in range(3):
            setxml = (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{uu[c]}">'
                      f'<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="{W}" SizeY="{H}" SizeC="3" SizeZ="1" SizeT="1">'
                      f'{chans}{tds}</Pixels></Image></OME>')
            tifffile.imwrite(f'{d}/set_C{c}.ome.tif', cyx[c], photometric='minisblack', tile=(32, 32), compression='zlib', description=setxml, metadata=None)
        # the same set with its OME-XML kept apart, in a companion file (as bfconvert writes it): each TIFF says only
        # BinaryOnly, naming the companion; and a companion of one grey plane
        import os
        os.makedirs(f'{d}/comp', exist_ok=True)
        tds = ''.join(f'<TiffData FirstC="{c}" FirstZ="0" FirstT="0" IFD="0" PlaneCount="1"><UUID FileName="comp_C{c}.ome.tif">{uu[c]}</UUID></TiffData>' for c in range(3))
        with open(f'{d}/comp/comp.companion.ome', 'w') as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="urn:uuid:companion">'
                    f'<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="{W}" SizeY="{H}" SizeC="3" SizeZ="1" SizeT="1" '
                    'PhysicalSizeX="500" PhysicalSizeXUnit="nm" PhysicalSizeY="0.5">'
                    f'{chans}{tds}</Pixels></Image></OME>')
        for c in range(3):
            bin = (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{uu[c]}">'
                   '<BinaryOnly MetadataFile="comp.companion.ome" UUID="urn:uuid:companion"/></OME>')
            tifffile.imwrite(f'{d}/comp/comp_C{c}.ome.tif', cyx[c], photometric='minisblack', tile=(32, 32), compression='zlib', description=bin, metadata=None)
        tifffile.imwrite(f'{d}/comp/one.ome.tif', cyx[1], photometric='minisblack', tile=(32, 32), description=
            '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><BinaryOnly MetadataFile="one.companion.ome" UUID="urn:uuid:one"/></OME>', metadata=None)
        with open(f'{d}/comp/one.companion.ome', 'w') as f:
            f.write(f'<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0"><Pixels DimensionOrder="XYZCT" Type="uint16" SizeX="{W}" SizeY="{H}" SizeC="1" SizeZ="1" SizeT="1">'
                    '<Channel ID="Channel:0:0" SamplesPerPixel="1"/><TiffData IFD="0" PlaneCount="1"><UUID FileName="one.ome.tif">urn:uuid:one</UUID></TiffData></Pixels></Image></OME>')
        # the same channels as an ImageJ (Fiji) hyperstack of two focal planes, planes in ImageJ's order C, Z, T; and one
        # that claims more channels than are read together
        tifffile.imwrite(f'{d}/ij-zc.tif', np.stack([cyx, cyx[::-1]]), imagej=True, metadata={'axes': 'ZCYX'})
        tifffile.imwrite(f'{d}/ij-c12.tif', np.stack([cyx[0]] * 12), imagej=True, metadata={'axes': 'CYX'})
        # the same stacks as ImageJ saves them over 4 GB: one directory, every plane raw after it (big-endian, as ImageJ writes)
        zc = np.stack([cyx, cyx[::-1]])
        tifffile.imwrite(f'{d}/ij-zc-big.tif', zc, imagej=True, metadata={'axes': 'ZCYX'}, truncate=True, byteorder='>')
        f32 = zc.astype(np.float32) / 7 - 100
        tifffile.imwrite(f'{d}/ij-zc-f32.tif', f32, imagej=True, metadata={'axes': 'ZCYX'})
        tifffile.imwrite(f'{d}/ij-zc-f32-big.tif', f32, imagej=True, metadata={'axes': 'ZCYX'}, truncate=True)
        tifffile.imwrite(f'{d}/ij-z-big.tif', cyx, imagej=True, metadata={'axes': 'ZYX'}, truncate=True)
        b = open(f'{d}/ij-zc-big.tif', 'rb').read()
        open(f'{d}/ij-zc-big-cut.tif', 'wb').write(b[:len(b) - 150 * 97 * 2 * 4])
        # two images (series) in one OME-TIFF: the first, of three channels, then a grey one
        with tifffile.TiffWriter(f'{d}/ome-2series.ome.tif', ome=True) as t:
            t.write(cyx, metadata={'axes': 'CYX'}, photometric='minisblack', tile=(32, 32))
            t.write(cyx[0], metadata={'axes': 'YX'}, photometric='minisblack', tile=(32, 32))
        # an OME-TIFF pyramid (as QuPath, bfconvert -pyramid and raw2ometiff write them): three channel pages, each with its
        # reduced levels as SubIFDs; and each level as a plain interleaved TIFF, the reference
        pyr = np.moveaxis(img((160, 200, 3), np.uint16), -1, 0).copy()
        lv = [pyr, pyr[:, ::2, ::2].copy(), pyr[:, ::4, ::4].copy()]
        with tifffile.TiffWriter(f'{d}/pyr.ome.tif', ome=True) as t:
            t.write(lv[0], subifds=2, metadata={'axes': 'CYX', 'PhysicalSizeX': 0.325, 'PhysicalSizeY': 0.325}, photometric='minisblack', tile=(32, 32), compression='zlib', predictor=True)
            for a in lv[1:]: t.write(a, subfiletype=1, photometric='minisblack', tile=(32, 32), compression='zlib', predictor=True)
        for k, a in enumerate(lv): w(f'pyr-l{k}', np.moveaxis(a, 0, -1).copy(), tile=(32, 32), compression='zlib', photometric='minisblack', planarconfig='contig')
        # the same pyramid as a companion set (bfconvert -pyramid-resolutions with a companion): a TIFF per channel, each
        # with its SubIFDs
        os.makedirs(f'{d}/pcomp', exist_ok=True)
        tds = ''.join(f'<TiffData FirstC="{c}" FirstZ="0" FirstT="0" IFD="0" PlaneCount="1"><UUID FileName="pcomp_C{c}.ome.tif">{uu[c]}</UUID></TiffData>' for c in range(3))
        with open(f'{d}/pcomp/pcomp.companion.ome', 'w') as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="urn:uuid:pcompanion">'
                    '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="200" SizeY="160" SizeC="3" SizeZ="1" SizeT="1" '
                    'PhysicalSizeX="0.325" PhysicalSizeY="0.325">'
                    f'{chans}{tds}</Pixels></Image></OME>')
        for c in range(3):
            bin = (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{uu[c]}">'
                   '<BinaryOnly MetadataFile="pcomp.companion.ome" UUID="urn:uuid:pcompanion"/></OME>')
            with tifffile.TiffWriter(f'{d}/pcomp/pcomp_C{c}.ome.tif') as t:
                t.write(lv[0][c], subifds=2, photometric='minisblack', tile=(32, 32), compression='zlib', description=bin, metadata=None)
                for a in lv[1:]: t.write(a[c], subfiletype=1, photometric='minisblack', tile=(32, 32), compression='zlib', metadata=None)
        # the same pyramid with its first page's SubIFD offsets pointing past the end of the file
        import struct
        data = bytearray(open(f'{d}/pyr.ome.tif', 'rb').read())
        tag = tifffile.TiffFile(f'{d}/pyr.ome.tif').pages[0].tags[330]
        struct.pack_into('<II', data, tag.valueoffset, len(data) + 10, len(data) + 20)
        open(f'{d}/pyr-bad.ome.tif', 'wb').write(data)
        # pixel sizes as Fiji saves them (ResolutionUnit none, the unit in ImageJ's description), with no unit at all, in inches
        g16 = img((H, W), np.uint16)
        tifffile.imwrite(f'{d}/px-ij-um.tif', g16, imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={'unit': 'micron'})
        tifffile.imwrite(f'{d}/px-ij-nm.tif', g16, imagej=True, resolution=(1 / 250, 1 / 125), metadata={'unit': 'nm'})
        tifffile.imwrite(f'{d}/px-ij-pixel.tif', g16, imagej=True, resolution=(2, 2), metadata={'unit': 'pixel'})
        tifffile.imwrite(f'{d}/px-none.tif', g16, resolution=(3, 3), resolutionunit='NONE')
        tifffile.imwrite(f'{d}/px-inch.tif', g16, resolution=(2540, 2540), resolutionunit='INCH')
        tifffile.imwrite(f'{d}/px-72dpi.tif', g16, resolution=(72, 72), resolutionunit='INCH')
        # an OME-XML that claims three channels, on pages of which the third is another size: page 0 stays usable alone
        with tifffile.TiffWriter(f'{d}/ome-uneven.ome.tif', ome=True) as t:
            t.write(cyx[:2], metadata={'axes': 'CYX'}, photometric='minisblack', tile=(32, 32))
        xml = tifffile.TiffFile(f'{d}/ome-uneven.ome.tif').ome_metadata
        with tifffile.TiffWriter(f'{d}/ome-uneven.ome.tif') as t:
            t.write(cyx[0], photometric='minisblack', tile=(32, 32), description=xml.replace('SizeC="2"', 'SizeC="3"').replace('PlaneCount="2"', 'PlaneCount="3"'), metadata=None)
            t.write(cyx[1], photometric='minisblack', tile=(32, 32), metadata=None)
            t.write(cyx[2][:50, :60].copy(), photometric='minisblack', tile=(32, 32), metadata=None)
        with tifffile.TiffWriter(f'{d}/pages.tif') as t:
            t.write(img((H, W), np.uint16), tile=(32, 32), compression='zlib', predictor=True)
            t.write(img((H, W), np.uint16), tile=(32, 32), compression='zlib', predictor=True)
        # a slide kept as pages with its label photograph after them (another shape): the label is no level
        lab = img((H, W), np.uint8)
        with tifffile.TiffWriter(f'{d}/with-label.tif') as t:
            t.write(lab, tile=(32, 32), resolution=(20000, 20000), resolutionunit='CENTIMETER')
            t.write(lab[::2, ::2].copy(), tile=(32, 32))
            t.write(img((40, 40), np.uint8))
        with tifffile.TiffWriter(f'{d}/only-label.tif') as t:
            t.write(lab, tile=(32, 32), resolution=(20000, 20000), resolutionunit='CENTIMETER')
            t.write(img((40, 40), np.uint8))
        # strips: read as tiles as wide as the image (the last strip holds the rows left)
        w('strips', img((H, W), np.uint8), compression='zlib', rowsperstrip=8)
        w('strips16-be-pred', img((H, W), np.uint16), compression='zlib', predictor=True, rowsperstrip=5, byteorder='>')
        w('strips-rgb-none', img((H, W, 3), np.uint8), photometric='rgb', rowsperstrip=13)
        w('strip-one', img((H, W), np.uint16), compression='zlib', rowsperstrip=H, bigtiff=True)
        # an uncompressed page in one strip too large to decode whole (ImageJ saves every page so): read as a plane of strips
        w('strip-huge-be', img((4100, 4100), np.uint16), rowsperstrip=4100, byteorder='>')
        # separate planes (libvips refuses them tiled), each beside the same samples written chunky
        def planar(name, data, **kw):
            w(name, data, planarconfig='separate', **kw)
            w(name + '-ref', np.moveaxis(data, 0, -1).copy(), planarconfig='contig', **kw)
        planar('planar', img((3, H, W), np.uint8), tile=(32, 32), compression='zlib', photometric='rgb')
        planar('planar4-be-pred', img((4, H, W), np.uint16), tile=(32, 48), compression='zlib', predictor=True, photometric='minisblack', byteorder='>')
        planar('planar-strips', img((3, H, W), np.uint16), rowsperstrip=7, compression='zlib', predictor=True, photometric='rgb')
        planar('planar-none', img((2, H, W), np.uint8), tile=(16, 64), photometric='minisblack')
        # left to libvips
        w('float', img((H, W), np.uint16).astype(np.float32), tile=(32, 32))
        # uncompressed strips whose strip 3 claims fewer bytes than its 13 rows hold
        w('raw-short', img((H, W), np.uint16), rowsperstrip=13)
        with tifffile.TiffFile(f'{d}/raw-short.tif', mode='r+b') as t:
            tag = t.pages[0].tags['StripByteCounts']; c = list(tag.value); c[3] -= 10; tag.overwrite(tuple(c))
        # a tile to damage: print its offset and length
        w('damaged', img((H, W), np.uint8), tile=(32, 32), compression='zlib', predictor=True)
        p = tifffile.TiffFile(f'{d}/damaged.tif').pages[0]
        print(p.dataoffsets[5], p.databytecounts[5])
        # a strip to damage
        w('damaged-strip', img((H, W), np.uint8), compression='zlib', rowsperstrip=8)
        p = tifffile.TiffFile(f'{d}/damaged-strip.tif').pages[0]
        print(p.dataoffsets[3], p.databytecounts[3])
        # a tile of separate planes to damage: sample 1's first tile of tile row 1 (20 tiles a plane: 5 across, 4 down)
        w('damaged-planar', img((3, H, W), np.uint8), tile=(32, 32), compression='zlib', photometric='rgb', planarconfig='separate')
        p = tifffile.TiffFile(f'{d}/damaged-planar.tif').pages[0]
        print(p.dataoffsets[25], p.databytecounts[25])
        """;

    private string? Write()
    {
        if (!File.Exists("/usr/bin/python3")) { output.WriteLine("SKIPPED: /usr/bin/python3 with tifffile is not available"); return null; }
        var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-c"); psi.ArgumentList.Add(Writer); psi.ArgumentList.Add(_dir);
        using var py = Process.Start(psi)!;
        var stdout = py.StandardOutput.ReadToEnd(); var stderr = py.StandardError.ReadToEnd();
        py.WaitForExit();
        if (py.ExitCode != 0 && stderr.Contains("No module named")) { output.WriteLine("SKIPPED: " + stderr); return null; }
        Assert.True(py.ExitCode == 0, stderr);
        return stdout.Trim();
    }

    [Fact]
    public void EveryRegion_ReadsTheSamplesLibvipsReads_AndOtherLayoutsAreLeftToLibvips()
    {
        if (Write() is null) return;
        // LZW (tifffile needs imagecodecs to encode it): written by libvips
        using (var g = NetVips.Image.NewFromFile(Path.Combine(_dir, "g8-deflate.tif")))
            g.Tiffsave(Path.Combine(_dir, "lzw.tif"), compression: NetVips.Enums.ForeignTiffCompression.Lzw, tile: true, tileWidth: 32, tileHeight: 32);
        var own = new[] { "g8-zlib-pred", "g8-deflate", "g16-be-pred", "g16-none", "g16-le-big", "rgb8-pred", "rgb16-be-big", "rgb16-none", "rgb8-deflate", "rgba8", "ga16", "c4", "c2",
            "strips", "strips16-be-pred", "strips-rgb-none", "strip-one", "strip-huge-be" };
        var cases = own.Select(n => (n, 0, false, true))
            .Concat([("pages", 0, false, true), ("pages", 1, false, true), ("rgb8-pred", 0, true, true), ("rgb16-none", 0, true, true), ("rgba8", 0, true, true), ("strips-rgb-none", 0, true, true)])
            .Concat(new[] { "lzw" }.Select(n => (n, 0, false, false)));
        output.WriteLine($"libdeflate on this machine: {LibDeflate.Available}");
        // both deflate decoders (libdeflate where the system has it, the zlib-ng stream) give libvips' samples
        foreach (bool lib in LibDeflate.Available ? new[] { true, false } : [false])
        {
        TiffTiles.UseLibDeflate = lib;
        var rnd = new Random(3);
        try
        {
        foreach (var (name, page, firstBand, expectOwn) in cases)
        {
            var path = Path.Combine(_dir, name + ".tif");
            using var mine = VipsImageSource.Open(path, page, firstBand, ownTiffReader: true);
            using var vips = VipsImageSource.Open(path, page, firstBand, ownTiffReader: false);
            Assert.False(vips.OwnTiffReader);
            Assert.True(expectOwn == mine.OwnTiffReader, $"{name}: own reader {mine.OwnTiffReader}, expected {expectOwn}");
            Assert.Equal((vips.Width, vips.Height, vips.Channels, vips.BitDepth), (mine.Width, mine.Height, mine.Channels, mine.BitDepth));
            int w = mine.Width, h = mine.Height, c = mine.Channels;
            var regions = new List<(int, int, int, int)> { (0, 0, w, h), (w - 7, h - 3, 7, 3), (31, 31, 2, 2), (32, 0, 1, h), (0, 95, w, 2) };
            for (int i = 0; i < 20; i++) { int x = rnd.Next(w), y = rnd.Next(h); regions.Add((x, y, rnd.Next(1, w - x + 1), rnd.Next(1, h - y + 1))); }
            foreach (var (x, y, rw, rh) in regions)
            {
                var a = new ushort[rw * rh * c]; var b = new ushort[rw * rh * c];
                mine.ReadRegion(x, y, rw, rh, a);
                vips.ReadRegion(x, y, rw, rh, b);
                Assert.True(a.AsSpan().SequenceEqual(b), $"{name} page {page}{(firstBand ? " first band" : "")}, libdeflate {lib}: region {x},{y} {rw}x{rh} differs");
            }
        }
        }
        finally { TiffTiles.UseLibDeflate = LibDeflate.Available; }
        }
        // separate planes: read here (libvips refuses them tiled), the samples of the same image written chunky
        foreach (var (name, channels) in new[] { ("planar", 3), ("planar4-be-pred", 4), ("planar-strips", 3), ("planar-none", 2) })
        {
            using var planar = VipsImageSource.Open(Path.Combine(_dir, name + ".tif"), ownTiffReader: true);
            using var chunky = VipsImageSource.Open(Path.Combine(_dir, name + "-ref.tif"), ownTiffReader: false);
            Assert.True(planar.OwnTiffReader, name);
            Assert.Equal((chunky.Width, chunky.Height, channels, chunky.BitDepth), (planar.Width, planar.Height, planar.Channels, planar.BitDepth));
            int w = planar.Width, h = planar.Height;
            var regions = new List<(int, int, int, int)> { (0, 0, w, h), (w - 7, h - 3, 7, 3), (31, 31, 2, 2), (33, 5, 60, 40) };
            foreach (var (x, y, rw, rh) in regions)
            {
                var a = new ushort[rw * rh * channels]; var b = new ushort[a.Length];
                planar.ReadRegion(x, y, rw, rh, a);
                chunky.ReadRegion(x, y, rw, rh, b);
                Assert.True(a.AsSpan().SequenceEqual(b), $"{name}: region {x},{y} {rw}x{rh} differs from the chunky image's");
            }
            // the first band only (a mask), as the chunky reader gives it
            using var first = VipsImageSource.Open(Path.Combine(_dir, name + ".tif"), 0, firstBandOnly: true, ownTiffReader: true);
            var f = new ushort[w * h]; first.ReadRegion(0, 0, w, h, f);
            using var firstRef = VipsImageSource.Open(Path.Combine(_dir, name + "-ref.tif"), 0, firstBandOnly: true);
            var fr = new ushort[w * h]; firstRef.ReadRegion(0, 0, w, h, fr);
            Assert.Equal(fr, f);
        }
        // a float page is read through libvips (its range spread over 16 bits), never by ActorSeg's own reader
        using (var fl = VipsImageSource.Open(Path.Combine(_dir, "float.tif"), ownTiffReader: true))
        {
            Assert.False(fl.OwnTiffReader);
            Assert.NotNull(fl.ScaledRange);
        }
    }

    [Fact]
    public void ExtraSamples_AreChannels_UnlessTheTiffSaysTheyAreAlpha()
    {
        if (Write() is null) return;
        foreach (var (name, channels) in new[] { ("c4", 4), ("c2", 2), ("rgba8", 3), ("ga16", 1), ("rgb8-pred", 3), ("g16-none", 1) })
            foreach (bool ownReader in new[] { true, false })
            {
                using var src = VipsImageSource.Open(Path.Combine(_dir, name + ".tif"), ownTiffReader: ownReader);
                Assert.True(channels == src.Channels, $"{name}: {src.Channels} channels, expected {channels}");
            }
        // every channel of the four is the file's: the same samples as libvips' own four bands, untouched
        using var c4 = VipsImageSource.Open(Path.Combine(_dir, "c4.tif"));
        using var raw = NetVips.Image.NewFromFile(Path.Combine(_dir, "c4.tif"));
        Assert.Equal(4, raw.Bands);
        var a = new ushort[c4.Width * c4.Height * 4];
        c4.ReadRegion(0, 0, c4.Width, c4.Height, a);
        Assert.Equal(raw.WriteToMemory<ushort>(), a);
        // the graph of a four-channel image describes all four
        var r = TestPaths.RunCli("graph", Path.Combine(_dir, "c4.tif"), "--out", Path.Combine(_dir, "g4"), "--spacing", "10", "--features", "published");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("150x97x4 16-bit", r.Stderr);
        var names = ActorSeg.Core.IO.NpzReader.Read(Path.Combine(_dir, "g4", "graph.npz"))["feature_names"].Strings();
        Assert.Contains("c3_mean", names);
        Assert.Equal(44, names.Length);
        // the overlay a segmentation writes shows such an image in grey (before, libvips was asked for 9 bands and failed)
        var mask = Path.Combine(_dir, "c-mask.tif");
        using (var zeros = NetVips.Image.Black(150, 97).Cast(NetVips.Enums.BandFormat.Uchar)) zeros.Tiffsave(mask);
        foreach (var name in new[] { "c4", "c2", "rgba8", "rgb8-pred", "ga16", "g16-none", "planar", "planar4-be-pred" }) // planar: libvips cannot decode them
        {
            var png = Path.Combine(_dir, $"overlay-{name}.png");
            ActorSeg.Core.IO.MaskPainter.Overlay(Path.Combine(_dir, name + ".tif"), mask, png);
            using var o = NetVips.Image.NewFromFile(png);
            Assert.Equal((150, 97, 3), (o.Width, o.Height, o.Bands));
        }
    }

    [Fact]
    public void AnOmeTiffsChannelPages_AreReadAsOneImage_InTheOrderItsXmlGives()
    {
        if (Write() is null) return;
        using var reference = VipsImageSource.Open(Path.Combine(_dir, "c3.tif"));
        Assert.Equal(3, reference.Channels);
        var want = new ushort[150 * 97 * 3];
        reference.ReadRegion(0, 0, 150, 97, want);
        foreach (var (name, pages) in new[] { ("ome-c", new[] { 0, 1, 2 }), ("ome-cz", new[] { 0, 2, 4 }), ("ome-zc", new[] { 0, 1, 2 }) })
        {
            var path = Path.Combine(_dir, name + ".ome.tif");
            using var src = ImageSources.Open(path);
            var multi = Assert.IsType<MultiPageSource>(src);
            Assert.Equal(pages, multi.Pages);
            Assert.Equal((150, 97, 3, 16), (src.Width, src.Height, src.Channels, src.BitDepth));
            var got = new ushort[want.Length];
            src.ReadRegion(0, 0, 150, 97, got);
            Assert.True(want.AsSpan().SequenceEqual(got), $"{name}: the channels differ from the interleaved image's");
            var part = new ushort[9 * 5 * 3]; var refPart = new ushort[part.Length];
            src.ReadRegion(141, 92, 9, 5, part); reference.ReadRegion(141, 92, 9, 5, refPart);
            Assert.Equal(refPart, part);
            // another page opens alone, as before
            using var one = ImageSources.Open(path, 1);
            Assert.Equal(1, one.Channels);
        }
        // the graph of the OME-TIFF is the graph of the interleaved image
        foreach (var name in new[] { "c3.tif", "ome-c.ome.tif" })
        {
            var r = TestPaths.RunCli("graph", Path.Combine(_dir, name), "--out", Path.Combine(_dir, "g-" + name), "--spacing", "10");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains("150x97x3 16-bit", r.Stderr);
        }
        GraphFiles.AssertSameGraph(Path.Combine(_dir, "g-c3.tif", "graph.npz"), Path.Combine(_dir, "g-ome-c.ome.tif", "graph.npz"));
        // the OME-XML's pixel size is the graph's record of it; the plain TIFF states none
        Assert.Equal([0.325, 0.325], ActorSeg.Core.IO.NpzReader.Read(Path.Combine(_dir, "g-ome-c.ome.tif", "graph.npz"))[ActorSeg.Core.IO.GraphOutputs.PixelSizeArray].AsSpan<double>().ToArray());
        Assert.False(ActorSeg.Core.IO.NpzReader.Read(Path.Combine(_dir, "g-c3.tif", "graph.npz")).ContainsKey(ActorSeg.Core.IO.GraphOutputs.PixelSizeArray));
        var info = TestPaths.RunCli("info", Path.Combine(_dir, "ome-cz.ome.tif"));
        Assert.Contains("OME-TIFF channels: 3, on pages 0, 2, 4", info.Stdout);
        // a channel page unlike the first: the first page alone, and the reason in the log (a warning, not libvips' debug chatter)
        using var warned = new InputWarnings();
        {
            var uneven = Path.Combine(_dir, "ome-uneven.ome.tif");
            using (var page0 = VipsImageSource.Open(uneven)) Assert.Contains("SizeC=\"3\"", page0.Description);
            using var alone = ImageSources.Open(uneven);
            Assert.IsType<VipsImageSource>(alone);
            Assert.Equal(1, alone.Channels);
            Assert.Contains(warned.All, m => m.StartsWith(uneven + ": page 0 is read alone: page 2 (channel 2 in the OME-XML) is 60x50", StringComparison.Ordinal));
        }
    }

    /// <summary>The interleaved three-channel image every OME set of <see cref="Writer"/> holds, as read from c3.tif.</summary>
    private ushort[] C3Pixels()
    {
        using var reference = VipsImageSource.Open(Path.Combine(_dir, "c3.tif"));
        var want = new ushort[150 * 97 * 3];
        reference.ReadRegion(0, 0, 150, 97, want);
        return want;
    }

    /// <summary>The graph.npz of <c>actorseg graph IMAGE --spacing 10</c>, written to a folder of this test's.</summary>
    private string GraphOf(string image, string folder)
    {
        var r = TestPaths.RunCli("graph", image, "--out", Path.Combine(_dir, folder), "--spacing", "10");
        Assert.True(r.ExitCode == 0, r.Stderr);
        return Path.Combine(_dir, folder, "graph.npz");
    }

    private string C3Graph() => GraphOf(Path.Combine(_dir, "c3.tif"), "g-c3");

    [Fact]
    public void AMultiFileOmeTiffSet_IsReadAsOneImage_FromWhicheverFileOfItIsGiven()
    {
        if (Write() is null) return;
        var want = C3Pixels();
        foreach (var name in new[] { "set_C0.ome.tif", "set_C1.ome.tif", "set_C2.ome.tif" })
        {
            using var src = ImageSources.Open(Path.Combine(_dir, name));
            var multi = Assert.IsType<MultiPageSource>(src);
            Assert.Equal(3, src.Channels);
            Assert.Equal(Enumerable.Range(0, 3).Select(c => $"set_C{c}.ome.tif" == name ? null : $"set_C{c}.ome.tif"), multi.Planes.Select(p => p.File));
            var got = new ushort[want.Length];
            src.ReadRegion(0, 0, 150, 97, got);
            Assert.True(want.AsSpan().SequenceEqual(got), $"{name}: the channels differ from the interleaved image's");
        }
        // the graph of the set is the graph of the interleaved image, bit for bit
        GraphFiles.AssertSameGraph(C3Graph(), GraphOf(Path.Combine(_dir, "set_C1.ome.tif"), "g-set"));
        Assert.Contains("OME-TIFF channels: 3, on pages 0 of set_C0.ome.tif, 0, 0 of set_C2.ome.tif", TestPaths.RunCli("info", Path.Combine(_dir, "set_C1.ome.tif")).Stdout);

        // a file of the set copied alone, and one whose fellow is a link out of its folder: page 0 alone, saying why
        using var warned = new InputWarnings();
        {
            var alone = Path.Combine(_dir, "alone"); Directory.CreateDirectory(alone);
            File.Copy(Path.Combine(_dir, "set_C0.ome.tif"), Path.Combine(alone, "set_C0.ome.tif"));
            using (var one = ImageSources.Open(Path.Combine(alone, "set_C0.ome.tif"))) Assert.Equal(1, one.Channels);
            Assert.Contains(warned.All, m => m.Contains("page 0 is read alone: channel 1 is in set_C1.ome.tif by its OME-XML, which is not beside it", StringComparison.Ordinal));
            var linked = Path.Combine(_dir, "linked"); Directory.CreateDirectory(linked);
            foreach (var c in new[] { 0, 2 }) File.Copy(Path.Combine(_dir, $"set_C{c}.ome.tif"), Path.Combine(linked, $"set_C{c}.ome.tif"));
            File.CreateSymbolicLink(Path.Combine(linked, "set_C1.ome.tif"), Path.Combine(_dir, "set_C1.ome.tif"));
            using (var one = ImageSources.Open(Path.Combine(linked, "set_C0.ome.tif"))) Assert.Equal(1, one.Channels);
            Assert.Contains(warned.All, m => m.Contains("channel 1 is in set_C1.ome.tif, a link to " + Path.Combine(_dir, "set_C1.ome.tif") + " outside the image's folder: refused", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void AMultiFileOmeTiffSet_IsDoneAgainByABatch_WhenAnotherFileOfItChanges()
    {
        if (Write() is null) return;
        var set = Path.Combine(_dir, "bset"); Directory.CreateDirectory(set);
        foreach (var c in new[] { 0, 1, 2 }) File.Copy(Path.Combine(_dir, $"set_C{c}.ome.tif"), Path.Combine(set, $"set_C{c}.ome.tif"));
        Assert.Equal(new[] { 0, 1, 2 }.Select(c => Path.Combine(set, $"set_C{c}.ome.tif")), ImageSources.FilesOf(Path.Combine(set, "set_C0.ome.tif")));
        Assert.Equal([Path.Combine(set, "set_C1.ome.tif"), Path.Combine(set, "set_C0.ome.tif"), Path.Combine(set, "set_C2.ome.tif")],
            ImageSources.FilesOf(Path.Combine(set, "set_C1.ome.tif")));
        Assert.Equal([Path.Combine(_dir, "c3.tif")], ImageSources.FilesOf(Path.Combine(_dir, "c3.tif")));

        var manifest = Path.Combine(_dir, "bset.csv");
        File.WriteAllText(manifest, "image\n" + Path.Combine(set, "set_C0.ome.tif") + "\n");
        var outDir = Path.Combine(_dir, "bset-out");
        string Status() => File.ReadAllLines(Path.Combine(outDir, "summary.csv"))[1].Split(',')[4];
        var first = TestPaths.RunCli("batch", manifest, "--out", outDir, "--spacing", "10");
        Assert.True(first.ExitCode == 0, first.Stderr);
        Assert.Equal("done", Status());
        var again = TestPaths.RunCli("batch", manifest, "--out", outDir, "--spacing", "10");
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Equal("skipped", Status());
        // another channel's file replaced (the given file untouched): the slide's result is not current any more
        var c2 = Path.Combine(set, "set_C2.ome.tif");
        var bytes = File.ReadAllBytes(Path.Combine(_dir, "set_C1.ome.tif")); // another channel's pixels, the set's OME-XML
        File.WriteAllBytes(c2 + ".new", bytes);
        File.Move(c2 + ".new", c2, overwrite: true);
        var changed = TestPaths.RunCli("batch", manifest, "--out", outDir, "--spacing", "10");
        Assert.True(changed.ExitCode == 0, changed.Stderr);
        Assert.Equal("done", Status());
    }

    [Fact]
    public void AnOmeCompanionFile_AndTheTiffsThatDeferToIt_AreReadAsOneImage_AndABatchTakesTheSetOnce()
    {
        if (Write() is null) return;
        var comp = Path.Combine(_dir, "comp");
        var want = C3Pixels();
        foreach (var name in new[] { "comp.companion.ome", "comp_C0.ome.tif", "comp_C2.ome.tif" })
        {
            using var src = ImageSources.Open(Path.Combine(comp, name));
            var multi = Assert.IsType<MultiPageSource>(src);
            Assert.Equal("comp.companion.ome", multi.MetadataFile);
            var got = new ushort[want.Length];
            src.ReadRegion(0, 0, 150, 97, got);
            Assert.True(want.AsSpan().SequenceEqual(got), $"{name}: the channels differ from the interleaved image's");
        }
        string F(string n) => Path.Combine(comp, n);
        Assert.Equal([F("comp.companion.ome"), F("comp_C0.ome.tif"), F("comp_C1.ome.tif"), F("comp_C2.ome.tif")], ImageSources.FilesOf(F("comp.companion.ome")));
        Assert.Equal([F("comp_C1.ome.tif"), F("comp.companion.ome"), F("comp_C0.ome.tif"), F("comp_C2.ome.tif")], ImageSources.FilesOf(F("comp_C1.ome.tif")));
        // one plane: its TIFF as it is
        using (var one = ImageSources.Open(F("one.companion.ome")))
        {
            Assert.Equal((1, 150, 97), (one.Channels, one.Width, one.Height));
            var got = new ushort[150 * 97];
            one.ReadRegion(0, 0, 150, 97, got);
            Assert.Equal(Enumerable.Range(0, 150 * 97).Select(i => want[3 * i + 1]), got);
        }
        Assert.Equal([F("one.companion.ome"), F("one.ome.tif")], ImageSources.FilesOf(F("one.companion.ome")));
        // the graph of the set through its companion is the interleaved image's, bit for bit
        GraphFiles.AssertSameGraph(C3Graph(), GraphOf(F("comp.companion.ome"), "g-comp"));
        Assert.Contains("OME-TIFF channels: 3, on pages 0 of comp_C0.ome.tif, 0 of comp_C1.ome.tif, 0 of comp_C2.ome.tif", TestPaths.RunCli("info", F("comp.companion.ome")).Stdout);
        // its pixel size is the companion's PhysicalSize (500 nm, and 0.5 in the default µm), from the companion or a TIFF of
        // the set, and a mask painted from it carries it; a one-file OME-TIFF's from its own OME-XML
        Assert.Equal((0.5, 0.5), PixelSize.MicronsPerPixel(F("comp.companion.ome")));
        Assert.Equal((0.5, 0.5), PixelSize.MicronsPerPixel(F("comp_C1.ome.tif")));
        Assert.Equal((0.5, 0.5, 1.0, 1.0), ActorSeg.Core.IO.MaskPainter.LevelScale(F("comp.companion.ome"), 150, 97));
        Assert.Equal((0.325, 0.325), PixelSize.MicronsPerPixel(Path.Combine(_dir, "ome-c.ome.tif")));
        Assert.Null(PixelSize.MicronsPerPixel(F("one.companion.ome"))); // stated nowhere
        var batch = TestPaths.RunCli("batch", F("*.companion.ome"), "--out", Path.Combine(_dir, "b-comp"), "--spacing", "10");
        Assert.True(batch.ExitCode == 0, batch.Stderr);
        var summary = File.ReadAllLines(Path.Combine(_dir, "b-comp", "summary.csv"));
        var um = Array.IndexOf(summary[0].Split(','), "um_per_pixel");
        Assert.True(um >= 0, summary[0]);
        Assert.Equal("0.5", summary.Single(l => l.StartsWith("comp.companion,", StringComparison.Ordinal)).Split(',')[um]);
        Assert.Equal("", summary.Single(l => l.StartsWith("one.companion,", StringComparison.Ordinal)).Split(',')[um]);

        // a folder batch takes each set once: by its companion, or by its first file where it has none
        var mixed = Path.Combine(_dir, "mixed"); Directory.CreateDirectory(mixed);
        foreach (var f in Directory.GetFiles(comp)) File.Copy(f, Path.Combine(mixed, Path.GetFileName(f)));
        foreach (var c in new[] { 0, 1, 2 }) File.Copy(Path.Combine(_dir, $"set_C{c}.ome.tif"), Path.Combine(mixed, $"set_C{c}.ome.tif"));
        File.Copy(Path.Combine(_dir, "c3.tif"), Path.Combine(mixed, "c3.tif"));
        var (slides, rejected) = ActorSeg.Cli.BatchInput.Load(mixed, null);
        Assert.Empty(rejected);
        Assert.Equal(["c3", "comp.companion", "one.companion", "set_C0.ome"], slides.Select(x => x.Name).Order(StringComparer.Ordinal));

        // what is wrong is said, naming the file
        var bad = Path.Combine(_dir, "bad"); Directory.CreateDirectory(bad);
        File.WriteAllText(Path.Combine(bad, "x.companion.ome"), "not xml at all");
        var e = Assert.Throws<InputFileException>(() => ImageSources.Open(Path.Combine(bad, "x.companion.ome")));
        Assert.Contains("x.companion.ome: is no OME-XML", e.Message);
        e = Assert.Throws<InputFileException>(() => ImageSources.Open(F("comp.companion.ome"), 1));
        Assert.Contains("an OME companion file has no pages of its own", e.Message);
        File.Copy(F("comp.companion.ome"), Path.Combine(bad, "comp.companion.ome"));
        File.Copy(F("comp_C0.ome.tif"), Path.Combine(bad, "comp_C0.ome.tif"));
        e = Assert.Throws<InputFileException>(() => ImageSources.Open(Path.Combine(bad, "comp.companion.ome")));
        Assert.Contains("channel 1 is in comp_C1.ome.tif by its OME-XML, which is not beside it", e.Message);
        // a TIFF of the set copied without its companion: its page alone, saying why
        using var warned = new InputWarnings();
        {
            var alone = Path.Combine(_dir, "comp-alone"); Directory.CreateDirectory(alone);
            File.Copy(F("comp_C2.ome.tif"), Path.Combine(alone, "comp_C2.ome.tif"));
            using (var page = ImageSources.Open(Path.Combine(alone, "comp_C2.ome.tif"))) Assert.Equal(1, page.Channels);
            Assert.Contains(warned.All, m => m.Contains("page 0 is read alone: its metadata is in comp.companion.ome by its OME-XML, which is not beside it", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void AnOmeXmlsPhysicalSize_IsReadInItsUnits()
    {
        string Px(string attrs) => $"<OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\"><Image ID=\"Image:0\"><Pixels ID=\"Pixels:0\" SizeX=\"9\" SizeY=\"9\" {attrs}/></Image></OME>";
        Assert.Equal((0.65, 0.65), OmeChannels.PhysicalSize(Px("PhysicalSizeX=\"0.65\"")));
        Assert.Equal((0.65, 0.7), OmeChannels.PhysicalSize(Px("PhysicalSizeX=\"0.65\" PhysicalSizeY=\"0.7\" PhysicalSizeYUnit=\"µm\"")));
        Assert.Equal((0.25, 2000.0), OmeChannels.PhysicalSize(Px("PhysicalSizeX=\"250\" PhysicalSizeXUnit=\"nm\" PhysicalSizeY=\"2\" PhysicalSizeYUnit=\"mm\"")));
        Assert.Null(OmeChannels.PhysicalSize(Px("PhysicalSizeX=\"1\" PhysicalSizeXUnit=\"pixel\""))); // no length
        Assert.Null(OmeChannels.PhysicalSize(Px("PhysicalSizeX=\"0\"")));
        Assert.Null(OmeChannels.PhysicalSize(Px("PhysicalSizeX=\"NaN\"")));
        Assert.Null(OmeChannels.PhysicalSize(Px("PhysicalSizeX=\"-1\"")));
        Assert.Null(OmeChannels.PhysicalSize(Px("")));
        Assert.Null(OmeChannels.PhysicalSize("<OME><Pixels PhysicalSizeX=\"1\"")); // not well-formed
    }

    [Fact]
    public void AnImageJHyperstack_IsReadAsAllItsChannels_OfItsFirstFocalPlane()
    {
        if (Write() is null) return;
        var want = C3Pixels();
        using (var src = ImageSources.Open(Path.Combine(_dir, "ij-zc.tif")))
        {
            var multi = Assert.IsType<MultiPageSource>(src);
            Assert.Equal([0, 1, 2], multi.Pages);
            Assert.Equal("ImageJ description", multi.MappedBy);
            var got = new ushort[want.Length];
            src.ReadRegion(0, 0, 150, 97, got);
            Assert.True(want.AsSpan().SequenceEqual(got), "the channels differ from the interleaved image's");
        }
        GraphFiles.AssertSameGraph(C3Graph(), GraphOf(Path.Combine(_dir, "ij-zc.tif"), "g-ij"));
        Assert.Contains("ImageJ hyperstack channels: 3, on pages 0, 1, 2", TestPaths.RunCli("info", Path.Combine(_dir, "ij-zc.tif")).Stdout);
        // more channels than are read together: page 0 alone, saying why
        using var warned = new InputWarnings();
        {
            using (var one = ImageSources.Open(Path.Combine(_dir, "ij-c12.tif"))) Assert.Equal(1, one.Channels);
            Assert.Contains(warned.All, m => m.Contains("page 0 is read alone: its ImageJ description says 12 channels; at most 8 are read together", StringComparison.Ordinal));
        }
        // ImageJ's layout over 4 GB (one directory, the planes raw after it, big-endian): the same channels, the same graph
        // (before: page 0 alone, with a warning)
        var big = Path.Combine(_dir, "ij-zc-big.tif");
        Assert.Equal(6, TiffPageLayout.TryRead(big, 0)!.ContiguousPlanes());
        using (var src = ImageSources.Open(big))
        {
            var multi = Assert.IsType<MultiPageSource>(src);
            Assert.Equal([false, true, true], multi.Planes.Select(p => p.Contiguous));
            var got = new ushort[want.Length];
            src.ReadRegion(0, 0, 150, 97, got);
            Assert.True(want.AsSpan().SequenceEqual(got), "the raw planes differ from the interleaved image's");
            Array.Clear(got);
            src.ReadRegion(17, 9, 60, 41, got.AsSpan(0, 60 * 41 * 3));
            for (int y = 0; y < 41; y++)
                Assert.True(want.AsSpan(((9 + y) * 150 + 17) * 3, 60 * 3).SequenceEqual(got.AsSpan(y * 60 * 3, 60 * 3)), $"row {y} of a region");
        }
        GraphFiles.AssertSameGraph(C3Graph(), GraphOf(big, "g-ij-big"));
        var bigInfo = TestPaths.RunCli("info", big).Stdout;
        Assert.Contains("planes 0 to 2 stored one after another from page 0", bigInfo);
        Assert.Contains("size: 150 x 97, 3 channel(s), 16-bit", bigInfo); // as read (before: page 0's one channel)
        // floating-point planes: read as the same stack with a directory for every plane reads them
        using (var paged = ImageSources.Open(Path.Combine(_dir, "ij-zc-f32.tif")))
        using (var raw = ImageSources.Open(Path.Combine(_dir, "ij-zc-f32-big.tif")))
        {
            Assert.Equal((3, 3), (paged.Channels, raw.Channels));
            var a = new ushort[150 * 97 * 3]; var b = new ushort[a.Length];
            paged.ReadRegion(0, 0, 150, 97, a); raw.ReadRegion(0, 0, 150, 97, b);
            Assert.True(a.AsSpan().SequenceEqual(b));
        }
        using (var warnedBig = new InputWarnings())
        {
            // cut short: page 0 alone, saying so; a z-stack (no channels) stored so: its first plane, saying so
            using (var cut = ImageSources.Open(Path.Combine(_dir, "ij-zc-big-cut.tif"))) Assert.Equal(1, cut.Channels);
            Assert.Contains(warnedBig.All, m => m.Contains("says 6 images stored one after another from page 0, but the file holds 2 there (truncated", StringComparison.Ordinal));
            using (var z = ImageSources.Open(Path.Combine(_dir, "ij-z-big.tif"))) Assert.Equal(1, z.Channels);
            Assert.Contains(warnedBig.All, m => m.Contains("ij-z-big.tif: page 0 is read alone: its ImageJ description says 3 images (focal planes or time points)", StringComparison.Ordinal));
        }
        // another writer's file (libtiff puts its directory after the pixels) that claims ImageJ's channels, with bytes enough
        // after its one page: those bytes are no planes
        var other = Path.Combine(_dir, "ij-claimed.tif");
        using (var g = NetVips.Image.NewFromFile(Path.Combine(_dir, "g16-none.tif")))
        using (var described = g.Mutate(m => m.Set(NetVips.GValue.GStrType, "image-description", "ImageJ=1.54f\nimages=3\nchannels=3\nhyperstack=true\n")))
            described.Tiffsave(other, compression: NetVips.Enums.ForeignTiffCompression.None);
        using (var f = new FileStream(other, FileMode.Append)) f.Write(new byte[150 * 97 * 2 * 3]);
        Assert.True(TiffPageLayout.TryRead(other, 0)!.DirectoryOffset > TiffPageLayout.TryRead(other, 0)!.All(273)![0]);
        Assert.Equal(1, TiffPageLayout.TryRead(other, 0)!.ContiguousPlanes());
        using (var warnedOther = new InputWarnings())
        {
            using (var one = ImageSources.Open(other)) Assert.Equal(1, one.Channels);
            Assert.Contains(warnedOther.All, m => m.Contains("but the file holds 1 there", StringComparison.Ordinal));
        }
        Assert.Throws<InputFileException>(() => VipsImageSource.Open(Path.Combine(_dir, "ij-zc-big-cut.tif"), contiguousPlane: 2));
        Assert.Throws<InputFileException>(() => VipsImageSource.Open(Path.Combine(_dir, "g8-zlib-pred.tif"), contiguousPlane: 1)); // compressed: no raw planes
        Assert.Null(OmeChannels.ImageJChannelPlanes("ImageJ=1.54f\nimages=1\nslices=1", 1, out var none));
        Assert.Null(none);
        Assert.Null(OmeChannels.ImageJChannelPlanes("ImageJ=1.54f\nimages=6\nchannels=3\nslices=2", 1, out var contiguous)); // planes without a page each
        Assert.Contains("says 6 images in 3 channels, but the file has 1 page(s)", contiguous);
        Assert.Null(OmeChannels.ImageJChannelPlanes("ImageJ=1.54f\nchannels=-3", 3, out var bad));
        Assert.Contains("channels=-3, not a count", bad);
    }

    [Fact]
    public void AnOmeTiffOfSeveralImages_ReadsTheFirst_AndSaysSo()
    {
        if (Write() is null) return;
        using var warned = new InputWarnings();
        {
            var path = Path.Combine(_dir, "ome-2series.ome.tif");
            using var src = ImageSources.Open(path);
            Assert.Equal(3, src.Channels);
            var got = new ushort[150 * 97 * 3];
            src.ReadRegion(0, 0, 150, 97, got);
            Assert.True(C3Pixels().AsSpan().SequenceEqual(got));
            Assert.Contains(warned.All, m => m == $"{path}: its OME-XML describes 2 images (series); the first is read");
            warned.Clear();
            using (ImageSources.Open(Path.Combine(_dir, "ome-c.ome.tif"))) { }
            Assert.DoesNotContain(warned.All, m => m.Contains("series", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void AnOmeTiffPyramid_IsReadAtEachLevelOfItsSubIfds_AllChannels_WithTheLevelsPixelSize()
    {
        if (Write() is null) return;
        var path = Path.Combine(_dir, "pyr.ome.tif");
        Assert.Equal([(200L, 160L), (100L, 80L), (50L, 40L)], TiffPageLayout.Levels(path));
        Assert.Equal(1, TiffPageLayout.ResolutionLevels(Path.Combine(_dir, "ome-c.ome.tif"))); // no SubIFDs: one level
        for (int level = 0; level < 3; level++)
        {
            using var reference = VipsImageSource.Open(Path.Combine(_dir, $"pyr-l{level}.tif"));
            var want = new ushort[reference.Width * reference.Height * 3];
            reference.ReadRegion(0, 0, reference.Width, reference.Height, want);
            // every channel page's SubIFD of the level, read together (before: --level 1 was page 1, channel 1 alone at full size)
            using var src = ImageSources.Open(path, level);
            Assert.Equal((reference.Width, reference.Height, 3), (src.Width, src.Height, src.Channels));
            var got = new ushort[want.Length];
            src.ReadRegion(0, 0, src.Width, src.Height, got);
            Assert.True(want.AsSpan().SequenceEqual(got), $"level {level}");
            // a level's tiles decoded here and through libvips give the same samples
            if (level > 0)
                for (int page = 0; page < 3; page++)
                {
                    using var mine = VipsImageSource.Open(path, page, ownTiffReader: true, subIfd: level - 1);
                    using var vips = VipsImageSource.Open(path, page, ownTiffReader: false, subIfd: level - 1);
                    Assert.True(mine.OwnTiffReader);
                    var a = new ushort[mine.Width * mine.Height]; var b = new ushort[a.Length];
                    mine.ReadRegion(3, 5, mine.Width - 3, mine.Height - 5, a.AsSpan(0, (mine.Width - 3) * (mine.Height - 5)));
                    vips.ReadRegion(3, 5, vips.Width - 3, vips.Height - 5, b.AsSpan(0, (mine.Width - 3) * (mine.Height - 5)));
                    Assert.True(a.AsSpan().SequenceEqual(b), $"level {level}, page {page}");
                }
        }
        var e = Assert.Throws<InputFileException>(() => ImageSources.Open(path, 3));
        Assert.Equal($"{path}: has 3 resolution levels (0..2: its first page and 2 reduced SubIFD level(s)); level 3 does not exist", e.Message);
        // a damaged pyramid: its levels named as such, not "page 3 does not exist"; level 0 still reads
        var bad = Path.Combine(_dir, "pyr-bad.ome.tif");
        Assert.Single(TiffPageLayout.Levels(bad));
        e = Assert.Throws<InputFileException>(() => ImageSources.Open(bad, 1));
        Assert.Contains("its first page names 2 reduced-resolution level(s) (SubIFDs), but level 1 cannot be read", e.Message);
        using (var full = ImageSources.Open(bad)) Assert.Equal((200, 160, 3), (full.Width, full.Height, full.Channels));
        // a companion set's pyramid: the same levels, samples and pixel sizes, through the companion
        var companion = Path.Combine(_dir, "pcomp", "pcomp.companion.ome");
        Assert.Equal(TiffPageLayout.Levels(path), ImageSources.PyramidLevels(companion));
        for (int level = 0; level < 3; level++)
        {
            using var a = ImageSources.Open(path, level);
            using var b = ImageSources.Open(companion, level);
            var x = new ushort[a.Width * a.Height * 3]; var y = new ushort[x.Length];
            a.ReadRegion(0, 0, a.Width, a.Height, x);
            Assert.Equal((a.Width, a.Height, 3), (b.Width, b.Height, b.Channels));
            b.ReadRegion(0, 0, b.Width, b.Height, y);
            Assert.True(x.AsSpan().SequenceEqual(y), $"companion level {level}");
        }
        Assert.Equal((1.3, 1.3), PixelSize.MicronsPerPixel(companion, 2));
        Assert.Equal((0.325, 0.325, 2.0, 2.0), ActorSeg.Core.IO.MaskPainter.LevelScale(companion, 100, 80));
        Assert.Contains("has 3 resolution levels", Assert.Throws<InputFileException>(() => ImageSources.Open(companion, 3)).Message);
        Assert.Contains("  2: 50 x 40, downsample 4, 1.3 µm/px", TestPaths.RunCli("info", companion).Stdout);
        // the pixel size of a level: level 0's (OME PhysicalSize) times the downsample; objects and masks map back to level 0
        Assert.Equal((0.325, 0.325), PixelSize.MicronsPerPixel(path, 0));
        Assert.Equal((1.3, 1.3), PixelSize.MicronsPerPixel(path, 2));
        Assert.Equal((0.325, 0.325, 4.0, 4.0), ActorSeg.Core.IO.MaskPainter.LevelScale(path, 50, 40));
        Assert.Equal((0.325, 0.325, 1.0, 1.0), ActorSeg.Core.IO.MaskPainter.LevelScale(path, 200, 160));
        // the graph of level 1 is the graph of the level as a plain TIFF, array for array (the pyramid's records its pixel size);
        // --mpp picks the level as for slides
        var r = TestPaths.RunCli("graph", path, "--level", "1", "--out", Path.Combine(_dir, "g-pyr1"), "--spacing", "10");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("100x80x3 16-bit", r.Stderr);
        Assert.Equal(0, TestPaths.RunCli("graph", Path.Combine(_dir, "pyr-l1.tif"), "--out", Path.Combine(_dir, "g-pyr-l1"), "--spacing", "10").ExitCode);
        GraphFiles.AssertSameGraph(Path.Combine(_dir, "g-pyr-l1", "graph.npz"), Path.Combine(_dir, "g-pyr1", "graph.npz"));
        Assert.Equal([0.65, 0.65], ActorSeg.Core.IO.NpzReader.Read(Path.Combine(_dir, "g-pyr1", "graph.npz"))[ActorSeg.Core.IO.GraphOutputs.PixelSizeArray].AsSpan<double>().ToArray()); // the level's
        r = TestPaths.RunCli("graph", path, "--mpp", "0.7", "--out", Path.Combine(_dir, "g-pyr-mpp"), "--spacing", "10");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("level 1 (0.65 µm/px) for --mpp 0.7", r.Stderr);
        Assert.Equal(File.ReadAllBytes(Path.Combine(_dir, "g-pyr1", "graph.npz")), File.ReadAllBytes(Path.Combine(_dir, "g-pyr-mpp", "graph.npz")));
        r = TestPaths.RunCli("graph", Path.Combine(_dir, "ome-c.ome.tif"), "--mpp", "0.7", "--out", Path.Combine(_dir, "g-nopyr-mpp"));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("this image has none", r.Stderr);
        // the overlay of a mask painted at a level is that level's picture (before: level 0's, the mask in its corner)
        using (var level2 = NetVips.Image.Black(50, 40).Cast(NetVips.Enums.BandFormat.Uchar))
            level2.Pngsave(Path.Combine(_dir, "mask-l2.png"));
        ActorSeg.Core.IO.MaskPainter.Overlay(path, Path.Combine(_dir, "mask-l2.png"), Path.Combine(_dir, "overlay-l2.png"));
        using (var overlay = NetVips.Image.NewFromFile(Path.Combine(_dir, "overlay-l2.png")))
            Assert.Equal((50, 40), (overlay.Width, overlay.Height));
        var info = TestPaths.RunCli("info", path).Stdout;
        Assert.Contains("  1: 100 x 80, downsample 2, 0.65 µm/px", info);
        Assert.Contains("  2: 50 x 40, downsample 4, 1.3 µm/px", info);
    }

    [Fact]
    public void ATiffPyramidOfPages_TakesItsLevelsPixelSizeAndScale_AndMppPicksAPage()
    {
        if (Write() is null) return;
        // a pyramid kept as pages (libvips' tiffsave --pyramid, ActorSeg's own mask.tif), 0.5 µm at level 0
        var path = Path.Combine(_dir, "page-pyramid.tif");
        using (var im = NetVips.Image.NewFromFile(Path.Combine(_dir, "pyr-l0.tif")))
        using (var grey = im.ExtractBand(0))
        using (var withRes = grey.Copy(xres: 2000.0, yres: 2000.0))
            withRes.Tiffsave(path, tile: true, tileWidth: 32, tileHeight: 32, pyramid: true, resunit: NetVips.Enums.ForeignTiffResunit.Cm);
        var levels = ImageSources.Pyramid(path);
        Assert.False(levels.SubIfds);
        Assert.Equal((200L, 160L), levels.Levels[0]);
        Assert.Equal((100L, 80L), levels.Levels[1]);
        Assert.Equal(1, ImageSources.PyramidLevels(Path.Combine(_dir, "ome-c.ome.tif")).Length); // channel pages of one size: no pyramid
        using (var one = ImageSources.Open(path, 1)) Assert.Equal((100, 80, 1), (one.Width, one.Height, one.Channels)); // page 1, as before
        Assert.Equal((1.0, 1.0), PixelSize.MicronsPerPixel(path, 1));
        // before: a mask of page 1 was written with level 0's pixel size and its objects in page-1 coordinates
        Assert.Equal((0.5, 0.5, 2.0, 2.0), ActorSeg.Core.IO.MaskPainter.LevelScale(path, 100, 80));
        var r = TestPaths.RunCli("graph", path, "--mpp", "1.2", "--out", Path.Combine(_dir, "g-pages-mpp"), "--spacing", "10");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("level 1 (1 µm/px) for --mpp 1.2", r.Stderr);
        Assert.Contains("levels (--level; pages, each smaller than the one before):", TestPaths.RunCli("info", path).Stdout);
        // libvips saves a three-channel grey image with both extra samples called alpha: no band of it is alpha, all
        // three are read (before: two, at every level)
        var c3 = Path.Combine(_dir, "c3-vips-pyramid.tif");
        using (var im = NetVips.Image.NewFromFile(Path.Combine(_dir, "pyr-l0.tif")))
            im.Tiffsave(c3, tile: true, tileWidth: 32, tileHeight: 32, pyramid: true);
        Assert.Equal([2L, 2L], TiffPageLayout.TryRead(c3, 1)!.All(338));
        for (int page = 0; page < 2; page++)
            using (var level = ImageSources.Open(c3, page)) Assert.Equal(3, level.Channels);
        using (var want = VipsImageSource.Open(Path.Combine(_dir, "pyr-l0.tif")))
        using (var got = VipsImageSource.Open(c3))
        {
            var a = new ushort[200 * 160 * 3]; var b = new ushort[a.Length];
            want.ReadRegion(0, 0, 200, 160, a); got.ReadRegion(0, 0, 200, 160, b);
            Assert.True(a.AsSpan().SequenceEqual(b));
        }
    }

    [Fact]
    public void ALabelPageAfterTheLevels_IsNoLevel()
    {
        if (Write() is null) return;
        // before: the 40 × 40 label was level 2 (or 1), its pixel size taken as 1.9 × 1.2 µm and --mpp free to choose it
        var path = Path.Combine(_dir, "with-label.tif");
        Assert.Equal([(150L, 97L), (75L, 49L)], TiffPageLayout.PageLevels(path));
        Assert.Equal((1.0, 0.5 * 97 / 49), PixelSize.MicronsPerPixel(path, 1)); // each side's own downsample
        var info = TestPaths.RunCli("info", path).Stdout;
        Assert.Contains("  1: 75 x 49", info);
        Assert.DoesNotContain("  2: 40 x 40", info);
        var only = Path.Combine(_dir, "only-label.tif");
        Assert.Single(ImageSources.PyramidLevels(only));
        var r = TestPaths.RunCli("graph", only, "--mpp", "2", "--out", Path.Combine(_dir, "g-label-mpp"), "--spacing", "10");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("this image has none", r.Stderr);
        // the shape check itself: levels rounded either way pass, other shapes do not
        Assert.True(TiffPageLayout.SameShape(150, 97, 75, 49));
        Assert.True(TiffPageLayout.SameShape(150, 97, 75, 48));
        Assert.True(TiffPageLayout.SameShape(100_001, 50_001, 3_126, 1_563)); // five halvings, rounded up each time
        Assert.True(TiffPageLayout.SameShape(150, 97, 1, 1));
        Assert.False(TiffPageLayout.SameShape(150, 97, 40, 40));
        Assert.False(TiffPageLayout.SameShape(40_000, 30_000, 1_000, 500));
    }

    [Fact]
    public void AFijiTiffsPixelSize_IsInTheUnitItsDescriptionNames_AndAUnitlessOneHasNone()
    {
        if (Write() is null) return;
        (double, double)? Um(string name) => PixelSize.MicronsPerPixel(Path.Combine(_dir, name)) is { } p ? (Math.Round(p.X, 6), Math.Round(p.Y, 6)) : null;
        Assert.Equal((0.65, 0.65), Um("px-ij-um.tif")); // before: 650 µm, the values taken as pixels per millimetre
        Assert.Contains("microns per pixel: 0.65 x 0.65", TestPaths.RunCli("info", Path.Combine(_dir, "px-ij-um.tif")).Stdout);
        Assert.Contains("microns per pixel: unknown (the file states none)", TestPaths.RunCli("info", Path.Combine(_dir, "px-none.tif")).Stdout);
        Assert.Equal((0.25, 0.125), Um("px-ij-nm.tif"));
        Assert.Null(Um("px-ij-pixel.tif"));
        Assert.Null(Um("px-none.tif")); // ResolutionUnit none, nothing naming a unit: no physical size
        Assert.Equal((10.0, 10.0), Um("px-inch.tif"));
        Assert.Null(Um("px-72dpi.tif")); // an image writer's default, as in both shared datasets: no calibration
        Assert.Null(Um("g8-deflate.tif")); // no resolution at all
        // a JPEG at 72 dpi (a print setting) has none; a PNG's pHYs in metres is kept
        using (var g = NetVips.Image.NewFromFile(Path.Combine(_dir, "g8-deflate.tif")))
        using (var dpi = g.Copy(xres: 72 / 25.4, yres: 72 / 25.4))
        {
            dpi.Jpegsave(Path.Combine(_dir, "px-72dpi.jpg"));
            using var um = g.Copy(xres: 1000 / 0.5, yres: 1000 / 0.5);
            um.Pngsave(Path.Combine(_dir, "px-half.png"));
        }
        Assert.Null(Um("px-72dpi.jpg"));
        Assert.Equal((0.5, 0.5), Um("px-half.png"));
        Assert.Equal(1, PixelSize.ImageJUnit("ImageJ=1.54f\nunit=\\u00B5m\n"));
        Assert.Equal(1e4, PixelSize.ImageJUnit("ImageJ=1.54f\nimages=1\nunit=cm\nspacing=2"));
        Assert.Null(PixelSize.ImageJUnit("unit=micron")); // not ImageJ's
        Assert.Null(PixelSize.ImageJUnit("ImageJ=1.54f\nunit=parsec"));
    }

    [Fact]
    public void ASlidesOtherFiles_AreThoseOpenSlideReadsBesideIt()
    {
        // MIRAX: the data folder of the slide's name; Hamamatsu VMS: the files its key file names, beside it
        var mrxs = Path.Combine(_dir, "s.mrxs");
        File.WriteAllText(mrxs, "x");
        Directory.CreateDirectory(Path.Combine(_dir, "s"));
        foreach (var f in new[] { "Slidedat.ini", "Index.dat", "Data0001.dat", "Data0000.dat" }) File.WriteAllText(Path.Combine(_dir, "s", f), f);
        Assert.Equal(new[] { "Data0000.dat", "Data0001.dat", "Index.dat", "Slidedat.ini" }.Select(f => Path.Combine(_dir, "s", f)).Prepend(mrxs),
            ImageSources.SlideFiles(mrxs, "mirax"));
        var vms = Path.Combine(_dir, "k.vms");
        foreach (var f in new[] { "k-0.jpg", "k-1.jpg", "k.opt" }) File.WriteAllText(Path.Combine(_dir, f), f);
        File.WriteAllText(vms, "[Virtual Microscope Specimen]\nNoLayers=1\nImageFile=k-0.jpg\nImageFile(1,0)=k-1.jpg\nMapFile=missing.jpg\n" +
                               "OptimisationFile=k.opt\nImageFile(2,0)=../elsewhere.jpg\nMacroImage=k-0.jpg\n");
        Assert.Equal([vms, Path.Combine(_dir, "k-0.jpg"), Path.Combine(_dir, "k-1.jpg"), Path.Combine(_dir, "k.opt")], ImageSources.SlideFiles(vms, "hamamatsu"));
        var ndpi = Path.Combine(_dir, "n.ndpi");
        File.WriteAllText(ndpi, "ImageFile=k-0.jpg\n");
        Assert.Equal([ndpi], ImageSources.SlideFiles(ndpi, "hamamatsu"));
        Assert.Equal([ndpi], ImageSources.SlideFiles(ndpi, "aperio"));
    }

    [Fact]
    public void AnOmeXmlNamingAFileWithAFolder_IsNotFollowed()
    {
        var xml = "<OME><Image ID=\"Image:0\"><Pixels DimensionOrder=\"XYCZT\" SizeX=\"9\" SizeY=\"9\" SizeC=\"2\" SizeZ=\"1\" SizeT=\"1\">" +
                  "<TiffData FirstC=\"0\" IFD=\"0\" PlaneCount=\"1\"><UUID FileName=\"a.ome.tif\">u0</UUID></TiffData>" +
                  "<TiffData FirstC=\"1\" IFD=\"0\" PlaneCount=\"1\"><UUID FileName=\"NAME\">u1</UUID></TiffData></Pixels></Image></OME>";
        var planes = ActorSeg.Core.Imaging.OmeChannels.ChannelPlanes(xml.Replace("NAME", "b.ome.tif"), "a.ome.tif", 1, out var none);
        Assert.Null(none);
        Assert.Equal([new(null, 0), new("b.ome.tif", 0)], planes);
        foreach (var bad in new[] { "../b.ome.tif", "/etc/b.ome.tif", "sub/b.ome.tif", "..", "b\\c.ome.tif" })
        {
            Assert.Null(ActorSeg.Core.Imaging.OmeChannels.ChannelPlanes(xml.Replace("NAME", bad), "a.ome.tif", 1, out var problem));
            Assert.Contains("not a plain file name beside this one", problem);
        }
        // the same page of two files is two planes; the same page of one file twice is refused
        Assert.Null(ActorSeg.Core.Imaging.OmeChannels.ChannelPlanes(xml.Replace("NAME", "a.ome.tif"), "a.ome.tif", 1, out var twice));
        Assert.Contains("maps two channels to the same page", twice);
    }

    [Theory]
    [InlineData("SizeC=\"3\"", "SizeC=\"4\"", "does not say which page holds channel 3")]
    [InlineData("SizeC=\"3\"", "SizeC=\"9\"", "describes 9 channels")]
    [InlineData("DimensionOrder=\"XYCZT\"", "DimensionOrder=\"XYCQT\"", "DimensionOrder 'XYCQT'")]
    [InlineData("<Pixels ", "<Pixels SizeQ=\"1\" <", "not well-formed")]
    public void AnOmeXmlThatDoesNotMapItsChannels_LeavesPageZeroAlone_SayingWhy(string from, string to, string why)
    {
        static int[]? Pages(string? description, string file, int pages, out string? problem) =>
            ActorSeg.Core.Imaging.OmeChannels.ChannelPlanes(description, file, pages, out problem)?.Select(p => p.Page).ToArray();
        var xml = "<?xml version=\"1.0\"?><OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\"><Image ID=\"Image:0\"><Pixels ID=\"Pixels:0\" DimensionOrder=\"XYCZT\" Type=\"uint16\" SizeX=\"150\" SizeY=\"97\" SizeC=\"3\" SizeZ=\"1\" SizeT=\"1\"><Channel ID=\"Channel:0:0\" SamplesPerPixel=\"1\"/><TiffData IFD=\"0\" PlaneCount=\"3\"/></Pixels></Image></OME>";
        Assert.Equal([0, 1, 2], Pages(xml, "x.ome.tif", 3, out var none));
        Assert.Null(none);
        var bad = xml.Replace(from, to);
        Assert.NotEqual(xml, bad);
        Assert.Null(Pages(bad, "x.ome.tif", 3, out var problem));
        Assert.Contains(why, problem);
        // a UUID naming the file itself is this file; naming another, that file of its multi-file set
        var self = xml.Replace("<TiffData IFD=\"0\" PlaneCount=\"3\"/>", "<TiffData IFD=\"0\" PlaneCount=\"3\"><UUID FileName=\"x.ome.tif\">urn:uuid:1</UUID></TiffData>");
        Assert.Equal([0, 1, 2], Pages(self, "x.ome.tif", 3, out _));
        Assert.All(ActorSeg.Core.Imaging.OmeChannels.ChannelPlanes(self, "x.ome.tif", 3, out _)!, p => Assert.Null(p.File));
        Assert.All(ActorSeg.Core.Imaging.OmeChannels.ChannelPlanes(self, "y.ome.tif", 3, out _)!, p => Assert.Equal("x.ome.tif", p.File));
        // sizes far beyond the file's pages cost nothing: only its pages are looked at
        var huge = xml.Replace("SizeZ=\"1\"", "SizeZ=\"2000000000\"").Replace("SizeT=\"1\"", "SizeT=\"2000000000\"").Replace("PlaneCount=\"3\"", "PlaneCount=\"2000000000\"");
        Assert.Equal([0, 1, 2], Pages(huge, "x.ome.tif", 3, out _));
        Assert.Null(Pages(xml, "x.ome.tif", 2, out var short2));
        Assert.Contains("does not say which page holds channel 2", short2);
        // a DTD is refused, never expanded
        Assert.Null(Pages("<!DOCTYPE OME [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>" + xml[xml.IndexOf("<OME", StringComparison.Ordinal)..], "x.ome.tif", 3, out var dtd));
        Assert.Contains("not well-formed", dtd);
    }

    [Fact]
    public void SignedSamples_AreReadShiftedIntoTheUnsignedRange_AndGiveTheShiftedImagesGraph()
    {
        if (Write() is null) return;
        foreach (var (name, shift, bits) in new[] { ("s16", 32768, 16), ("s8", 128, 8) })
        {
            using var signed = VipsImageSource.Open(Path.Combine(_dir, name + ".tif"));
            using var shifted = VipsImageSource.Open(Path.Combine(_dir, name + "-shifted.tif"));
            Assert.Equal((shift, bits), (signed.SignedShift, signed.BitDepth));
            var a = new ushort[150 * 97]; var b = new ushort[a.Length];
            signed.ReadRegion(0, 0, 150, 97, a); shifted.ReadRegion(0, 0, 150, 97, b);
            Assert.Equal(b, a);
            foreach (var f in new[] { name, name + "-shifted" })
            {
                var r = TestPaths.RunCli("graph", Path.Combine(_dir, f + ".tif"), "--out", Path.Combine(_dir, "g-" + f), "--spacing", "10");
                Assert.True(r.ExitCode == 0, r.Stderr);
            }
            Assert.Equal(File.ReadAllBytes(Path.Combine(_dir, "g-" + name + "-shifted", "graph.npz")), File.ReadAllBytes(Path.Combine(_dir, "g-" + name, "graph.npz")));
            // a mask is never shifted (its values are classes): values below 0 read as 65535, foreground in binary mode
            using var asMask = VipsImageSource.Open(Path.Combine(_dir, name + ".tif"), 0, firstBandOnly: true);
            Assert.Equal(0, asMask.SignedShift);
            var m = new ushort[150 * 97];
            asMask.ReadRegion(0, 0, 150, 97, m);
            for (int i = 0; i < m.Length; i++) Assert.Equal(b[i] >= shift ? b[i] - shift : 65535, m[i]);
        }
        // int32 labels: 0..65535 as they are, the rest 65535 (never background), so the binary graph is the 0/1 mask's
        using (var labels = VipsImageSource.Open(Path.Combine(_dir, "labels32.tif"), 0, firstBandOnly: true))
        {
            var l = new ushort[150 * 97];
            labels.ReadRegion(0, 0, 150, 97, l);
            Assert.Equal(1, l[20 * 150 + 20]); Assert.Equal(65535, l[60 * 150 + 70]); Assert.Equal(65535, l[25 * 150 + 120]); Assert.Equal(300, l[70 * 150 + 130]);
            Assert.Equal(0, l[0]);
        }
        foreach (var mask in new[] { "labels32", "labels-binary" })
        {
            var r = TestPaths.RunCli("graph", Path.Combine(_dir, "g16-none.tif"), "--mask", Path.Combine(_dir, mask + ".tif"), "--out", Path.Combine(_dir, "gm-" + mask), "--spacing", "10");
            Assert.True(r.ExitCode == 0, r.Stderr);
        }
        Assert.Equal(File.ReadAllBytes(Path.Combine(_dir, "gm-labels-binary", "graph.npz")), File.ReadAllBytes(Path.Combine(_dir, "gm-labels32", "graph.npz")));
        // in classes mode such labels are no class ids, and are refused naming the mask
        var classes = TestPaths.RunCli("graph", Path.Combine(_dir, "g16-none.tif"), "--mask", Path.Combine(_dir, "labels32.tif"), "--mask-mode", "classes", "--out", Path.Combine(_dir, "gm-classes"), "--spacing", "10");
        Assert.Equal(1, classes.ExitCode);
        Assert.Contains("labels32.tif", classes.Stderr);
        Assert.Contains("(signed samples, read shifted by +32768)", TestPaths.RunCli("info", Path.Combine(_dir, "s16.tif")).Stdout);
    }

    [Fact]
    public void AHostileDirectory_IsLeftToLibvips_WhichRefusesIt_NamingTheFile()
    {
        if (Write() is null) return;
        var good = Path.Combine(_dir, "g8-zlib-pred.tif");
        var bytes = File.ReadAllBytes(good);
        uint first = BitConverter.ToUInt32(bytes, 4); // little-endian classic TIFF: the first directory's offset
        int entries = BitConverter.ToUInt16(bytes, (int)first);
        int nextAt = (int)first + 2 + entries * 12;
        // the directory chain loops back on itself: there is no page 1, whichever reader looks
        var loop = (byte[])bytes.Clone();
        BitConverter.GetBytes(first).CopyTo(loop, nextAt);
        var loopPath = Path.Combine(_dir, "loop.tif");
        File.WriteAllBytes(loopPath, loop);
        Assert.Null(TiffTiles.TryOpen(loopPath, 1, 150, 97, 1, wide: false));
        var ex = Assert.ThrowsAny<Exception>(() => VipsImageSource.Open(loopPath, 1, ownTiffReader: true).Dispose());
        Assert.Contains(loopPath, ex.Message);
        // BitsPerSample claims a million values (stored past the end of the file): not read, not allocated
        var claim = (byte[])bytes.Clone();
        for (int e = 0; e < entries; e++)
        {
            int at = (int)first + 2 + e * 12;
            if (BitConverter.ToUInt16(claim, at) != 258) continue;
            BitConverter.GetBytes(1_000_000u).CopyTo(claim, at + 4);
            BitConverter.GetBytes((uint)claim.Length).CopyTo(claim, at + 8);
        }
        var claimPath = Path.Combine(_dir, "claim.tif");
        File.WriteAllBytes(claimPath, claim);
        Assert.Null(TiffTiles.TryOpen(claimPath, 0, 150, 97, 1, wide: false));
        // and the first page of the looping file still reads through this reader, as libvips reads it
        using var mine = VipsImageSource.Open(loopPath, 0, ownTiffReader: true);
        using var vips = VipsImageSource.Open(loopPath, 0, ownTiffReader: false);
        Assert.True(mine.OwnTiffReader);
        var a = new ushort[150 * 97]; var b = new ushort[150 * 97];
        mine.ReadRegion(0, 0, 150, 97, a); vips.ReadRegion(0, 0, 150, 97, b);
        Assert.Equal(b, a);
    }

    /// <summary>The damaged chunk's (offset, length), from the writer's output line <paramref name="line"/>.</summary>
    private static (long Offset, long Length) Chunk(string where, int line)
    {
        var parts = where.Split('\n')[line].Trim().Split(' ');
        return (long.Parse(parts[0]), long.Parse(parts[1]));
    }

    /// <summary>With either deflate decoder: reading the whole page fails naming the file and <paramref name="chunk"/>,
    /// and the first <paramref name="goodRows"/> rows, which do not meet it, still read.</summary>
    private void FailsNaming(string path, string chunk, int goodRows)
    {
        foreach (bool lib in LibDeflate.Available ? new[] { true, false } : [false])
        {
            TiffTiles.UseLibDeflate = lib;
            try
            {
                using var src = VipsImageSource.Open(path, ownTiffReader: true);
                Assert.True(src.OwnTiffReader);
                var buf = new ushort[src.Width * src.Height * src.Channels];
                var ex = Assert.Throws<InputFileException>(() => src.ReadRegion(0, 0, src.Width, src.Height, buf));
                Assert.StartsWith(path, ex.Message);
                Assert.Contains(chunk, ex.Message);
                output.WriteLine($"libdeflate {lib}: {ex.Message}");
                src.ReadRegion(0, 0, src.Width, goodRows, buf);
            }
            finally { TiffTiles.UseLibDeflate = LibDeflate.Available; }
        }
    }

    [Fact]
    public void ADamagedTile_FailsNamingTheFileAndTheTile_AndTheOthersStillRead()
    {
        if (GarbleDeflateStream(0, "damaged.tif") is not { } path) return;
        // tile 5 is column 0 of the second row of tiles (five tiles across): the first row still reads
        FailsNaming(path, "tile 5", 32);
    }

    [Fact]
    public void AStripWhoseChecksumDisagrees_FailsNamingTheStrip_WhereLibtiffWouldNotLook()
    {
        var where = Write();
        if (where is null) return;
        var (offset, length) = Chunk(where, 1);
        var path = Path.Combine(_dir, "damaged-strip.tif");
        using (var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            // one bit of the stream's Adler-32 (its last four bytes): the samples inflate as before, the check fails
            f.Position = offset + length - 2;
            int b = f.ReadByte();
            f.Position = offset + length - 2;
            f.WriteByte((byte)(b ^ 0x10));
        }
        // strips 0..2 (rows 0..23) still read
        FailsNaming(path, "strip 3", 24);
    }

    [Fact]
    public void AnUncompressedStripShorterThanItsRows_FailsNamingTheStrip_AndTheRowsAboveItStillRead()
    {
        // read row by row (only the region's bytes): a strip's count is still checked against the rows it must hold
        if (Write() is null) return;
        FailsNaming(Path.Combine(_dir, "raw-short.tif"), "strip 3 has offset", 39);
    }

    [Fact]
    public void ADamagedTileOfSeparatePlanes_FailsNamingTheFileAndTheTile_AndTheRowsAboveItStillRead()
    {
        if (GarbleDeflateStream(2, "damaged-planar.tif") is not { } path) return;
        // tile row 0 (rows 0..31) of every plane still reads
        FailsNaming(path, "tile 25", 32);
    }

    /// <summary>The file <paramref name="name"/> with the deflate stream of the chunk on line <paramref name="which"/> of what
    /// <see cref="Write"/> printed turned to garbage past its zlib header; null where the layouts could not be written.</summary>
    private string? GarbleDeflateStream(int which, string name)
    {
        var where = Write();
        if (where is null) return null;
        var (offset, length) = Chunk(where, which);
        var path = Path.Combine(_dir, name);
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.Position = offset + 2;
        f.Write(Enumerable.Repeat((byte)0xFF, (int)Math.Min(64, length - 2)).ToArray());
        return path;
    }
    [Fact]
    public void TilesWithNoData_AreNamedAsTheImageIsRead()
    {
        // a 64 × 32 tiled TIFF of 8 tiles, the first of which an unfinished writer never wrote (offset and length 0): its
        // pixels read as 0, and that is said, with how many of the tiles are empty
        var path = Path.Combine(_dir, "sparse.tif");
        using (var im = (NetVips.Image.Black(64, 32) + 100).Cast(NetVips.Enums.BandFormat.Uchar))
            im.Tiffsave(path, tile: true, tileWidth: 16, tileHeight: 16, compression: NetVips.Enums.ForeignTiffCompression.None);
        var bytes = File.ReadAllBytes(path);
        Assert.Equal((byte)'I', bytes[0]); // little-endian, classic TIFF
        int ifd = BitConverter.ToInt32(bytes, 4), entries = BitConverter.ToUInt16(bytes, ifd);
        int at = Enumerable.Range(0, entries).Select(i => ifd + 2 + 12 * i).Single(e => BitConverter.ToUInt16(bytes, e) == 324);
        Assert.Equal(8, BitConverter.ToInt32(bytes, at + 4));
        int offsets = BitConverter.ToInt32(bytes, at + 8);
        BitConverter.GetBytes(0).CopyTo(bytes, offsets); // tile 0's offset
        int countsAt = Enumerable.Range(0, entries).Select(i => ifd + 2 + 12 * i).Single(e => BitConverter.ToUInt16(bytes, e) == 325);
        int width = BitConverter.ToUInt16(bytes, countsAt + 2) == 3 ? 2 : 4; // SHORT or LONG lengths
        Array.Clear(bytes, BitConverter.ToInt32(bytes, countsAt + 8), width); // and its length
        File.WriteAllBytes(path, bytes);
        var info = TestPaths.RunCli("info", path);
        Assert.Equal(0, info.ExitCode);
        Assert.Contains($"{path}: 1 of 8 tiles of page 0 hold no data (offset or byte count 0: a sparse or unfinished file); what is read there is not image data", info.Stderr);
        using var src = ImageSources.Open(path);
        var px = new ushort[64 * 32];
        src.ReadRegion(0, 0, 64, 32, px);
        Assert.Equal(0, px[0]);
        Assert.Equal(100, px[16]);
    }
}
