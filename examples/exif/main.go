// Command exif reads the EXIF metadata of an uploaded JPEG: the camera,
// when the picture was taken, where, and which way up it is.
//
// The gateway mounts it at /exif:
//
//   - POST /exif with a JPEG as the body answers 200 with JSON:
//
//     {"make":"Canon","model":"Canon EOS R5","datetime_original":"2024-05-01T12:34:56",
//     "orientation":6,"orientation_text":"rotate 90° clockwise to view",
//     "gps":{"latitude":48.8583,"longitude":2.2945,"altitude_m":35}}
//
//     Fields the file does not have are left out: a picture without GPS
//     tags has no "gps". datetime_original is ISO 8601, with the offset
//     when the camera recorded one (OffsetTimeOriginal), local time
//     otherwise, as EXIF itself has it; latitude and longitude are decimal
//     degrees, negative south and west.
//
//   - A body that is not a JPEG, a JPEG without EXIF, or EXIF data that is
//     cut short or points outside itself is answered with 400 and a
//     message that says what is wrong and where, e.g. "truncated IFD0 at
//     offset 8: 12 entries need 150 bytes, the TIFF data has 96".
//
// The parser is written here, on encoding/binary alone: the JPEG segments
// up to the first scan, the APP1 segment that starts with "Exif\0\0", and
// in its TIFF structure (either byte order) IFD0, the Exif sub-IFD and
// the GPS IFD. It needs no grant.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o exif.wasm .
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// maxBody bounds uploads; the gateway's max_request_bytes applies too.
const maxBody = 32 << 20

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /exif", extract)
	shanhai.HandleHTTP(mux)
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}

// Metadata is what the module reports.
type Metadata struct {
	Make             string `json:"make,omitempty"`
	Model            string `json:"model,omitempty"`
	DateTimeOriginal string `json:"datetime_original,omitempty"`
	Orientation      int    `json:"orientation,omitempty"`
	OrientationText  string `json:"orientation_text,omitempty"`
	GPS              *GPS   `json:"gps,omitempty"`
}

// GPS is a position in decimal degrees, negative south and west.
type GPS struct {
	Latitude  float64  `json:"latitude"`
	Longitude float64  `json:"longitude"`
	AltitudeM *float64 `json:"altitude_m,omitempty"`
}

// FormatError is a problem with the uploaded file: the client's, so 400.
type FormatError struct{ msg string }

func (e *FormatError) Error() string { return e.msg }

func bad(format string, args ...any) error {
	return &FormatError{msg: fmt.Sprintf(format, args...)}
}

func extract(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxBody))
		return
	}
	md, err := Parse(body)
	var fe *FormatError
	if errors.As(err, &fe) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(md)
}

func writeError(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": message})
}

// Parse reads the metadata of a JPEG file. Its errors are *FormatError.
func Parse(jpeg []byte) (*Metadata, error) {
	tiff, err := exifSegment(jpeg)
	if err != nil {
		return nil, err
	}
	return parseTIFF(tiff)
}

// exifSegment returns the TIFF data of the file's EXIF APP1 segment.
func exifSegment(b []byte) ([]byte, error) {
	if len(b) < 2 || b[0] != 0xFF || b[1] != 0xD8 {
		return nil, bad("not a JPEG: the body does not start with the SOI marker FF D8")
	}
	for pos := 2; ; {
		// Markers may be preceded by any number of fill bytes FF.
		start := pos
		for pos < len(b) && b[pos] == 0xFF {
			pos++
		}
		if pos == start || pos >= len(b) {
			if pos >= len(b) {
				return nil, bad("no EXIF data: the JPEG ends at offset %d without an APP1 Exif segment", len(b))
			}
			return nil, bad("not a JPEG: expected a marker at offset %d, found %02X", start, b[start])
		}
		marker := b[pos]
		pos++
		switch {
		case marker == 0xD9 || marker == 0xDA:
			// EOI or the first scan: EXIF must come before the image data.
			return nil, bad("no EXIF data: no APP1 Exif segment before the image data")
		case marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7):
			continue // TEM and RSTn stand alone, without a length
		}
		if pos+2 > len(b) {
			return nil, bad("truncated JPEG: segment FF%02X at offset %d has no length", marker, pos-2)
		}
		n := int(binary.BigEndian.Uint16(b[pos:]))
		if n < 2 {
			return nil, bad("not a JPEG: segment FF%02X at offset %d has length %d", marker, pos-2, n)
		}
		if pos+n > len(b) {
			return nil, bad("truncated JPEG: segment FF%02X at offset %d claims %d bytes, only %d are left", marker, pos-2, n, len(b)-pos)
		}
		data := b[pos+2 : pos+n]
		pos += n
		// APP1 also carries XMP ("http://ns.adobe.com/xap/1.0/"): keep
		// looking for the one that is EXIF.
		if marker == 0xE1 && len(data) >= 6 && string(data[:6]) == "Exif\x00\x00" {
			return data[6:], nil
		}
	}
}

// Tags read by the module (EXIF 2.3 and TIFF 6.0).
const (
	tagMake               = 0x010F
	tagModel              = 0x0110
	tagOrientation        = 0x0112
	tagExifIFD            = 0x8769
	tagGPSIFD             = 0x8825
	tagDateTimeOriginal   = 0x9003
	tagOffsetTimeOriginal = 0x9011
	tagGPSLatitudeRef     = 0x0001
	tagGPSLatitude        = 0x0002
	tagGPSLongitudeRef    = 0x0003
	tagGPSLongitude       = 0x0004
	tagGPSAltitudeRef     = 0x0005
	tagGPSAltitude        = 0x0006
)

// Field types and the size of one value of each.
const (
	typeByte      = 1
	typeASCII     = 2
	typeShort     = 3
	typeLong      = 4
	typeRational  = 5
	typeUndefined = 7
	typeSLong     = 9
	typeSRational = 10
)

var typeSizes = map[uint16]int{
	typeByte: 1, typeASCII: 1, typeShort: 2, typeLong: 4, typeRational: 8,
	6: 1, typeUndefined: 1, 8: 2, typeSLong: 4, typeSRational: 8, 11: 4, 12: 8,
}

// field is one IFD entry, its value located (but not decoded) in the
// TIFF data.
type field struct {
	tag, typ uint16
	count    int
	value    []byte
}

// ifd is a parsed image file directory: its name, for messages, and its
// fields by tag.
type ifd struct {
	name   string
	fields map[uint16]field
}

type tiffReader struct {
	b     []byte
	order binary.ByteOrder
	seen  map[uint32]bool // IFD offsets already read, against loops
}

func parseTIFF(b []byte) (*Metadata, error) {
	if len(b) < 8 {
		return nil, bad("truncated EXIF: the TIFF header needs 8 bytes, the segment has %d", len(b))
	}
	t := &tiffReader{b: b, seen: make(map[uint32]bool)}
	switch string(b[:2]) {
	case "II":
		t.order = binary.LittleEndian
	case "MM":
		t.order = binary.BigEndian
	default:
		return nil, bad("bad EXIF: the TIFF header starts with %q, not \"II\" or \"MM\"", b[:2])
	}
	if magic := t.order.Uint16(b[2:]); magic != 42 {
		return nil, bad("bad EXIF: the TIFF magic number is %d, not 42", magic)
	}
	ifd0, err := t.readIFD("IFD0", t.order.Uint32(b[4:]))
	if err != nil {
		return nil, err
	}
	md := &Metadata{}
	if md.Make, err = t.ascii(ifd0, tagMake, "Make"); err != nil {
		return nil, err
	}
	if md.Model, err = t.ascii(ifd0, tagModel, "Model"); err != nil {
		return nil, err
	}
	if f, ok := ifd0.fields[tagOrientation]; ok {
		v, err := t.uint(ifd0, f, "Orientation")
		if err != nil {
			return nil, err
		}
		if v < 1 || v > 8 {
			return nil, bad("bad EXIF: Orientation is %d, not 1 to 8", v)
		}
		md.Orientation = int(v)
		md.OrientationText = orientations[v]
	}
	if exif, err := t.subIFD(ifd0, tagExifIFD, "Exif IFD"); err != nil {
		return nil, err
	} else if exif != nil {
		if md.DateTimeOriginal, err = t.dateTime(exif); err != nil {
			return nil, err
		}
	}
	if gps, err := t.subIFD(ifd0, tagGPSIFD, "GPS IFD"); err != nil {
		return nil, err
	} else if gps != nil {
		if md.GPS, err = t.position(gps); err != nil {
			return nil, err
		}
	}
	return md, nil
}

// orientations describes the Orientation values: how to turn the stored
// image to show it upright.
var orientations = map[uint32]string{
	1: "upright",
	2: "mirror horizontally",
	3: "rotate 180°",
	4: "mirror vertically",
	5: "mirror horizontally, then rotate 90° counter-clockwise",
	6: "rotate 90° clockwise to view",
	7: "mirror horizontally, then rotate 90° clockwise",
	8: "rotate 90° counter-clockwise to view",
}

func (t *tiffReader) readIFD(name string, off uint32) (*ifd, error) {
	if t.seen[off] {
		return nil, bad("bad EXIF: %s at offset %d is an IFD already read (a loop)", name, off)
	}
	t.seen[off] = true
	if uint64(off)+2 > uint64(len(t.b)) {
		return nil, bad("truncated EXIF: %s at offset %d is past the end of the TIFF data (%d bytes)", name, off, len(t.b))
	}
	n := int(t.order.Uint16(t.b[off:]))
	// Each entry is 12 bytes; the offset of the next IFD follows them.
	need := 2 + 12*n + 4
	if int(off)+need > len(t.b) {
		return nil, bad("truncated %s at offset %d: %d entries need %d bytes, the TIFF data has %d", name, off, n, need, len(t.b)-int(off))
	}
	d := &ifd{name: name, fields: make(map[uint16]field, n)}
	for i := range n {
		e := t.b[int(off)+2+12*i:]
		f := field{tag: t.order.Uint16(e), typ: t.order.Uint16(e[2:]), count: int(t.order.Uint32(e[4:]))}
		size, known := typeSizes[f.typ]
		if !known {
			continue // a type from a later version: skip the field, as readers must
		}
		total := uint64(size) * uint64(f.count)
		if total <= 4 {
			f.value = e[8 : 8+total]
		} else {
			at := uint64(t.order.Uint32(e[8:]))
			if at+total > uint64(len(t.b)) {
				return nil, bad("truncated EXIF: tag 0x%04X in %s has %d bytes at offset %d, past the end of the TIFF data (%d bytes)", f.tag, name, total, at, len(t.b))
			}
			f.value = t.b[at : at+total]
		}
		d.fields[f.tag] = f
	}
	return d, nil
}

// subIFD reads the IFD that the pointer tag of parent points to, or nil
// when there is no such tag.
func (t *tiffReader) subIFD(parent *ifd, tag uint16, name string) (*ifd, error) {
	f, ok := parent.fields[tag]
	if !ok {
		return nil, nil
	}
	off, err := t.uint(parent, f, name+" pointer")
	if err != nil {
		return nil, err
	}
	return t.readIFD(name, off)
}

// ascii returns an ASCII field, without its NUL and trailing spaces
// (cameras pad Make and Model), or "" when absent.
func (t *tiffReader) ascii(d *ifd, tag uint16, name string) (string, error) {
	f, ok := d.fields[tag]
	if !ok {
		return "", nil
	}
	if f.typ != typeASCII {
		return "", bad("bad EXIF: %s in %s has type %d, not ASCII", name, d.name, f.typ)
	}
	s, _, _ := strings.Cut(string(f.value), "\x00")
	return strings.TrimRight(s, " "), nil
}

// uint returns the first value of a BYTE, SHORT or LONG field.
func (t *tiffReader) uint(d *ifd, f field, name string) (uint32, error) {
	if f.count < 1 {
		return 0, bad("bad EXIF: %s in %s has no value", name, d.name)
	}
	switch f.typ {
	case typeByte:
		return uint32(f.value[0]), nil
	case typeShort:
		return uint32(t.order.Uint16(f.value)), nil
	case typeLong:
		return t.order.Uint32(f.value), nil
	}
	return 0, bad("bad EXIF: %s in %s has type %d, not an unsigned integer", name, d.name, f.typ)
}

// rationals returns the values of a RATIONAL field, which must have n.
func (t *tiffReader) rationals(d *ifd, f field, name string, n int) ([]float64, error) {
	if f.typ != typeRational || f.count != n {
		return nil, bad("bad EXIF: %s in %s must be %d RATIONAL values, not %d of type %d", name, d.name, n, f.count, f.typ)
	}
	out := make([]float64, n)
	for i := range out {
		num, den := t.order.Uint32(f.value[8*i:]), t.order.Uint32(f.value[8*i+4:])
		if den == 0 {
			return nil, bad("bad EXIF: %s in %s has a zero denominator", name, d.name)
		}
		out[i] = float64(num) / float64(den)
	}
	return out, nil
}

// dateTime returns DateTimeOriginal ("2024:05:01 12:34:56") in ISO 8601,
// with OffsetTimeOriginal ("+02:00") when there is one.
func (t *tiffReader) dateTime(exif *ifd) (string, error) {
	raw, err := t.ascii(exif, tagDateTimeOriginal, "DateTimeOriginal")
	// Cameras that do not know the time write zeros or blanks.
	if err != nil || strings.Trim(raw, "0: ") == "" {
		return "", err
	}
	when, err := time.Parse("2006:01:02 15:04:05", raw)
	if err != nil {
		return "", bad("bad EXIF: DateTimeOriginal %q is not YYYY:MM:DD HH:MM:SS", raw)
	}
	out := when.Format("2006-01-02T15:04:05")
	offset, err := t.ascii(exif, tagOffsetTimeOriginal, "OffsetTimeOriginal")
	if err != nil {
		return "", err
	}
	if offset != "" {
		if _, err := time.Parse("-07:00", offset); err != nil {
			return "", bad("bad EXIF: OffsetTimeOriginal %q is not ±HH:MM", offset)
		}
		out += offset
	}
	return out, nil
}

// position reads the GPS IFD, or returns nil when it has no latitude and
// longitude.
func (t *tiffReader) position(gps *ifd) (*GPS, error) {
	lat, err := t.coordinate(gps, tagGPSLatitude, tagGPSLatitudeRef, "GPSLatitude", "N", "S")
	if err != nil || lat == nil {
		return nil, err
	}
	lon, err := t.coordinate(gps, tagGPSLongitude, tagGPSLongitudeRef, "GPSLongitude", "E", "W")
	if err != nil || lon == nil {
		return nil, err
	}
	if math.Abs(*lat) > 90 || math.Abs(*lon) > 180 {
		return nil, bad("bad EXIF: GPS position %v, %v is out of range", *lat, *lon)
	}
	p := &GPS{Latitude: *lat, Longitude: *lon}
	if f, ok := gps.fields[tagGPSAltitude]; ok {
		alt, err := t.rationals(gps, f, "GPSAltitude", 1)
		if err != nil {
			return nil, err
		}
		// AltitudeRef 1 means below sea level.
		if ref, ok := gps.fields[tagGPSAltitudeRef]; ok && ref.count > 0 && ref.value[0] == 1 {
			alt[0] = -alt[0]
		}
		p.AltitudeM = &alt[0]
	}
	return p, nil
}

// coordinate reads a GPS latitude or longitude, three rationals (degrees,
// minutes, seconds) and a reference letter, as decimal degrees, negative
// for the reference neg.
func (t *tiffReader) coordinate(gps *ifd, tag, refTag uint16, name, pos, neg string) (*float64, error) {
	f, ok := gps.fields[tag]
	if !ok {
		return nil, nil
	}
	dms, err := t.rationals(gps, f, name, 3)
	if err != nil {
		return nil, err
	}
	ref, err := t.ascii(gps, refTag, name+"Ref")
	if err != nil {
		return nil, err
	}
	deg := dms[0] + dms[1]/60 + dms[2]/3600
	switch ref {
	case pos:
	case neg:
		deg = -deg
	default:
		return nil, bad("bad EXIF: %sRef is %q, not %s or %s", name, ref, pos, neg)
	}
	return &deg, nil
}
