//go:build !wasm

// The tests run natively, against shanhaitest's mock host. Their JPEGs
// are built here, with a small EXIF encoder, so no binary file is needed.

package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// tag is one IFD entry to encode: its value already in the file's byte
// order.
type tag struct {
	id, typ uint16
	count   int
	value   []byte
}

// byteOrder is binary.LittleEndian or binary.BigEndian.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// enc builds tags in one byte order.
type enc struct{ o byteOrder }

func (e enc) ascii(id uint16, s string) tag {
	return tag{id, typeASCII, len(s) + 1, append([]byte(s), 0)}
}

func (e enc) byte1(id uint16, v byte) tag { return tag{id, typeByte, 1, []byte{v}} }

func (e enc) short(id, v uint16) tag { return tag{id, typeShort, 1, e.o.AppendUint16(nil, v)} }

func (e enc) long(id uint16, v uint32) tag { return tag{id, typeLong, 1, e.o.AppendUint32(nil, v)} }

// rationals encodes num/den pairs.
func (e enc) rationals(id uint16, v ...uint32) tag {
	var b []byte
	for _, x := range v {
		b = e.o.AppendUint32(b, x)
	}
	return tag{id, typeRational, len(v) / 2, b}
}

// tiff encodes a TIFF structure: the header, then the Exif and GPS IFDs
// (when not nil), then IFD0 with pointers to them. Placing IFD0 last lets
// every offset be known when it is written.
func (e enc) tiff(ifd0, exif, gps []tag) []byte {
	magic := "II*\x00"
	if e.o == byteOrder(binary.BigEndian) {
		magic = "MM\x00*"
	}
	b := append([]byte(magic), 0, 0, 0, 0)
	ifd0 = slices.Clone(ifd0)
	if exif != nil {
		ifd0 = append(ifd0, e.long(tagExifIFD, uint32(len(b))))
		b = e.ifd(b, exif)
	}
	if gps != nil {
		ifd0 = append(ifd0, e.long(tagGPSIFD, uint32(len(b))))
		b = e.ifd(b, gps)
	}
	e.o.PutUint32(b[4:], uint32(len(b)))
	return e.ifd(b, ifd0)
}

// ifd appends an IFD, then the values that do not fit in its entries.
func (e enc) ifd(b []byte, tags []tag) []byte {
	data := len(b) + 2 + 12*len(tags) + 4
	var extra []byte
	b = e.o.AppendUint16(b, uint16(len(tags)))
	for _, t := range tags {
		b = e.o.AppendUint16(b, t.id)
		b = e.o.AppendUint16(b, t.typ)
		b = e.o.AppendUint32(b, uint32(t.count))
		if len(t.value) <= 4 {
			b = append(b, t.value...)
			b = append(b, make([]byte, 4-len(t.value))...)
			continue
		}
		b = e.o.AppendUint32(b, uint32(data+len(extra)))
		extra = append(extra, t.value...)
	}
	b = e.o.AppendUint32(b, 0) // no next IFD
	return append(b, extra...)
}

// segment encodes a JPEG marker segment.
func segment(marker byte, data []byte) []byte {
	out := []byte{0xFF, marker}
	out = binary.BigEndian.AppendUint16(out, uint16(2+len(data)))
	return append(out, data...)
}

// jpeg wraps segments between SOI and a token scan and EOI.
func jpeg(segments ...[]byte) []byte {
	out := []byte{0xFF, 0xD8}
	for _, s := range segments {
		out = append(out, s...)
	}
	out = append(out, segment(0xDA, []byte{1, 1, 0, 0, 0x3F, 0})...)
	return append(out, 0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD9)
}

var jfif = segment(0xE0, []byte("JFIF\x00\x01\x02\x00\x00\x01\x00\x01\x00\x00"))

func exifAPP1(tiff []byte) []byte { return segment(0xE1, append([]byte("Exif\x00\x00"), tiff...)) }

// sample is a full set of tags in byte order o: the Eiffel Tower, from
// 35 m up, on 1 May 2024.
func sample(o byteOrder) []byte {
	e := enc{o}
	return e.tiff(
		[]tag{e.ascii(tagMake, "Canon"), e.ascii(tagModel, "Canon EOS R5   "), e.short(tagOrientation, 6)},
		[]tag{e.ascii(tagDateTimeOriginal, "2024:05:01 12:34:56"), e.ascii(tagOffsetTimeOriginal, "+02:00")},
		[]tag{
			e.ascii(tagGPSLatitudeRef, "N"), e.rationals(tagGPSLatitude, 48, 1, 51, 1, 2988, 100),
			e.ascii(tagGPSLongitudeRef, "E"), e.rationals(tagGPSLongitude, 2, 1, 17, 1, 402, 10),
			e.byte1(tagGPSAltitudeRef, 0), e.rationals(tagGPSAltitude, 35, 1),
		},
	)
}

func post(t *testing.T, body []byte) (int, string) {
	t.Helper()
	resp, err := shanhaitest.Do(httptest.NewRequest("POST", "/exif", bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestLittleEndian(t *testing.T) {
	shanhaitest.Reset()
	status, body := post(t, jpeg(jfif, exifAPP1(sample(binary.LittleEndian))))
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var md Metadata
	if err := json.Unmarshal([]byte(body), &md); err != nil {
		t.Fatal(err)
	}
	if md.Make != "Canon" || md.Model != "Canon EOS R5" || md.Orientation != 6 ||
		md.OrientationText != "rotate 90° clockwise to view" || md.DateTimeOriginal != "2024-05-01T12:34:56+02:00" {
		t.Errorf("%+v", md)
	}
	if g := md.GPS; g == nil || !near(g.Latitude, 48.8583) || !near(g.Longitude, 2.2945) || g.AltitudeM == nil || *g.AltitudeM != 35 {
		t.Errorf("GPS %+v", md.GPS)
	}
}

func TestBigEndianSouthWest(t *testing.T) {
	shanhaitest.Reset()
	e := enc{binary.BigEndian}
	tiff := e.tiff(
		[]tag{e.ascii(tagModel, "X100V"), e.short(tagOrientation, 1)},
		[]tag{e.ascii(tagDateTimeOriginal, "2023:12:31 23:59:59")},
		[]tag{
			e.ascii(tagGPSLatitudeRef, "S"), e.rationals(tagGPSLatitude, 33, 1, 51, 1, 3540, 100),
			e.ascii(tagGPSLongitudeRef, "W"), e.rationals(tagGPSLongitude, 70, 1, 40, 1, 0, 1),
			e.byte1(tagGPSAltitudeRef, 1), e.rationals(tagGPSAltitude, 5, 2),
		},
	)
	xmp := segment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"))
	// Fill bytes before a marker are allowed.
	file := jpeg(jfif, xmp, append([]byte{0xFF, 0xFF}, exifAPP1(tiff)...))
	md, err := Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	if md.Make != "" || md.Model != "X100V" || md.Orientation != 1 || md.OrientationText != "upright" || md.DateTimeOriginal != "2023-12-31T23:59:59" {
		t.Errorf("%+v", md)
	}
	if g := md.GPS; g == nil || !near(g.Latitude, -(33+51.0/60+35.4/3600)) || !near(g.Longitude, -(70+40.0/60)) || *g.AltitudeM != -2.5 {
		t.Errorf("GPS %+v", md.GPS)
	}
}

// Only the tags a file has are reported.
func TestPartial(t *testing.T) {
	shanhaitest.Reset()
	e := enc{binary.LittleEndian}
	status, body := post(t, jpeg(exifAPP1(e.tiff([]tag{e.ascii(tagMake, "NIKON")}, nil, nil))))
	if status != 200 || body != `{"make":"NIKON"}`+"\n" {
		t.Errorf("%d %s", status, body)
	}
	// A GPS IFD without a position, and a date the camera did not know.
	tiff := e.tiff(nil, []tag{e.ascii(tagDateTimeOriginal, "0000:00:00 00:00:00")}, []tag{e.byte1(tagGPSAltitudeRef, 0)})
	if status, body := post(t, jpeg(exifAPP1(tiff))); status != 200 || body != "{}\n" {
		t.Errorf("%d %s", status, body)
	}
}

func TestBadInput(t *testing.T) {
	shanhaitest.Reset()
	le := enc{binary.LittleEndian}
	good := sample(binary.LittleEndian)
	// IFD0 claims 12 entries (150 bytes) and the data stops after 2 of them.
	truncated := []byte("II*\x00\x08\x00\x00\x00\x0C\x00")
	truncated = append(truncated, make([]byte, 24)...)
	// The Exif pointer leads back to IFD0.
	loop := le.tiff([]tag{le.long(tagExifIFD, 8)}, nil, nil)
	binary.LittleEndian.PutUint32(loop[4:], 8)
	// A Make of 100 bytes whose offset points past the end.
	pastEnd := le.tiff([]tag{le.ascii(tagMake, strings.Repeat("x", 99))}, nil, nil)
	pastEnd = pastEnd[:len(pastEnd)-50]

	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"empty", nil, "not a JPEG: the body does not start with the SOI marker FF D8"},
		{"gif", []byte("GIF89a..."), "not a JPEG: the body does not start with the SOI marker FF D8"},
		{"only SOI", []byte{0xFF, 0xD8}, "no EXIF data: the JPEG ends at offset 2 without an APP1 Exif segment"},
		{"no EXIF", jpeg(jfif), "no EXIF data: no APP1 Exif segment before the image data"},
		{"garbage after SOI", []byte{0xFF, 0xD8, 0x00, 0x01}, "not a JPEG: expected a marker at offset 2, found 00"},
		{"cut segment", append([]byte{0xFF, 0xD8}, exifAPP1(good)[:40]...), "truncated JPEG: segment FFE1 at offset 2 claims"},
		{"no length", []byte{0xFF, 0xD8, 0xFF, 0xE1, 0x00}, "truncated JPEG: segment FFE1 at offset 2 has no length"},
		{"short TIFF", jpeg(exifAPP1([]byte("II*\x00"))), "truncated EXIF: the TIFF header needs 8 bytes, the segment has 4"},
		{"byte order", jpeg(exifAPP1([]byte("XX*\x00\x08\x00\x00\x00"))), `the TIFF header starts with "XX"`},
		{"magic", jpeg(exifAPP1([]byte("II+\x00\x08\x00\x00\x00"))), "the TIFF magic number is 43, not 42"},
		{"IFD0 offset", jpeg(exifAPP1([]byte("MM\x00*\x00\x00\x10\x00"))), "truncated EXIF: IFD0 at offset 4096 is past the end of the TIFF data (8 bytes)"},
		{"truncated IFD", jpeg(exifAPP1(truncated)), "truncated IFD0 at offset 8: 12 entries need 150 bytes, the TIFF data has 26"},
		{"value past end", jpeg(exifAPP1(pastEnd)), "truncated EXIF: tag 0x010F in IFD0 has 100 bytes at offset 26, past the end of the TIFF data"},
		{"loop", jpeg(exifAPP1(loop)), "bad EXIF: Exif IFD at offset 8 is an IFD already read (a loop)"},
		{"orientation", jpeg(exifAPP1(le.tiff([]tag{le.short(tagOrientation, 9)}, nil, nil))), "Orientation is 9, not 1 to 8"},
		{"make type", jpeg(exifAPP1(le.tiff([]tag{le.short(tagMake, 1)}, nil, nil))), "Make in IFD0 has type 3, not ASCII"},
		{"date", jpeg(exifAPP1(le.tiff(nil, []tag{le.ascii(tagDateTimeOriginal, "yesterday")}, nil))), `DateTimeOriginal "yesterday" is not YYYY:MM:DD HH:MM:SS`},
		{"zero denominator", jpeg(exifAPP1(le.tiff(nil, nil, []tag{le.ascii(tagGPSLatitudeRef, "N"), le.rationals(tagGPSLatitude, 1, 1, 2, 0, 3, 1)}))), "GPSLatitude in GPS IFD has a zero denominator"},
		{"latitude ref", jpeg(exifAPP1(le.tiff(nil, nil, []tag{le.ascii(tagGPSLatitudeRef, "Q"), le.rationals(tagGPSLatitude, 1, 1, 2, 1, 3, 1)}))), `GPSLatitudeRef is "Q", not N or S`},
		{"latitude count", jpeg(exifAPP1(le.tiff(nil, nil, []tag{le.rationals(tagGPSLatitude, 1, 1)}))), "GPSLatitude in GPS IFD must be 3 RATIONAL values, not 1 of type 5"},
	} {
		status, body := post(t, tc.body)
		var reply struct{ Error string }
		json.Unmarshal([]byte(body), &reply)
		if status != 400 || !strings.Contains(reply.Error, tc.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tc.name, status, body, tc.want)
		}
	}
}

func TestMethodAndSize(t *testing.T) {
	shanhaitest.Reset()
	resp, err := shanhaitest.Do(httptest.NewRequest("GET", "/exif", nil))
	if err != nil || resp.StatusCode != 405 {
		t.Errorf("GET: %v %v", resp, err)
	}
	if status, _ := post(t, make([]byte, maxBody+1)); status != 413 {
		t.Errorf("oversized body: %d", status)
	}
}
