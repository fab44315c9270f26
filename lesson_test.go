package smtpd_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's ten-minute lesson, run as a teacher would run it, and the
// picture of its trace (docs/trace.png) made from that run, so that the
// picture cannot drift from the lesson:
//
//	go test -run TestLessonTrace .                     # the lesson still gives the pictured trace
//	go test -run TestLessonTrace -update-trace-png .   # run it, and make the picture again
//
// The check needs bash and nc; making the picture also needs aha and
// Chromium (apt-get install aha chromium), which the normal run never uses.

var updateTracePNG = flag.Bool("update-trace-png", false,
	"run the README's lesson and write its trace to "+lessonGolden+" and its picture to "+lessonPicture+" (needs aha and chromium)")

const (
	lessonGolden  = "testdata/lesson.trace" // the trace, normalized (see traceVariables)
	lessonPicture = "docs/trace.png"
	// pictureKey is the PNG text chunk that holds the SHA-256 of the
	// golden trace the picture was made with.
	pictureKey = "smtpd-lesson-trace-sha256"
)

// lesson is what the README tells a teacher to run.
type lesson struct {
	serverArgs []string // after "go run ./cmd/smtpd" (minute 0)
	ncCommand  string   // the session by hand (minute 1)
	typed      []string // what is typed into it
	batches    []string // the shell commands of minutes 3 and 5
}

// readLesson finds the lesson's commands in README.md: the code blocks
// that follow the "**Minute N" paragraphs.
func readLesson(t *testing.T) lesson {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := func(minute string) []string {
		text := string(data)
		start := strings.Index(text, "**Minute "+minute+":")
		if start < 0 {
			t.Fatalf("README.md has no **Minute %s: paragraph", minute)
		}
		text = text[start+1:]
		if end := strings.Index(text, "**Minute "); end >= 0 {
			text = text[:end]
		}
		var found []string
		for _, m := range regexp.MustCompile("(?s)```[a-z]*\n(.*?)```").FindAllStringSubmatch(text, -1) {
			found = append(found, m[1])
		}
		if len(found) == 0 {
			t.Fatalf("README.md: no code block after **Minute %s", minute)
		}
		return found
	}
	var l lesson
	server := strings.TrimSpace(blocks("0")[0])
	args, ok := strings.CutPrefix(server, "go run ./cmd/smtpd")
	if !ok {
		t.Fatalf("README.md, minute 0: %q does not start the server with go run ./cmd/smtpd", server)
	}
	l.serverArgs = strings.Fields(args)
	minute1 := blocks("1")
	if len(minute1) < 2 {
		t.Fatalf("README.md, minute 1: want the nc command and the lines typed into it")
	}
	l.ncCommand = strings.TrimSpace(minute1[0])
	l.typed = strings.Split(strings.TrimSuffix(minute1[1], "\n"), "\n")
	for _, minute := range []string{"3", "5"} {
		l.batches = append(l.batches, strings.TrimSpace(blocks(minute)[0]))
	}
	return l
}

// onPort rewrites a command of the README for the server's port.
func onPort(command, port string) string {
	return strings.ReplaceAll(command, "127.0.0.1 2525", "127.0.0.1 "+port)
}

// TestLessonTrace runs the README's lesson against the smtpd command and
// compares the trace with the one docs/trace.png shows: minute 0's
// server (with -color always, as the picture was made), minute 1 typed into
// nc a line at a time, each command once the previous reply has come, and
// the commands of minutes 3 and 5 as written.
func TestLessonTrace(t *testing.T) {
	if testing.Short() && !*updateTracePNG {
		t.Skip("the lesson takes several seconds (its commands sleep); -short skips it")
	}
	requirePeer(t, "bash", "bash")
	requirePeer(t, "nc", "netcat-openbsd")
	t.Parallel()
	l := readLesson(t)
	dir := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(), "TZ=UTC"}
	args := append(l.serverArgs, "-color", "always", "-hostname", "mx.class.example", "-d", "data", "-M", "-1")
	p := startSmtpdForTest(t, dir, env, args...)
	_, port, _ := strings.Cut(p.addr, ":")

	typeSession(t, dir, onPort(l.ncCommand, port), l.typed)
	for _, batch := range l.batches {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "-c", onPort(batch, port))
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\n%s", batch, err, out)
		}
	}
	if err := p.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("smtpd: %v\n%s", err, p.stderr.bytes())
	}
	raw := p.stdout.bytes()
	_, trace, _ := bytes.Cut(raw, []byte("\n")) // after "Listening on TCP …"
	got := normalizeTrace(trace)

	if *updateTracePNG {
		if err := os.WriteFile(lessonGolden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := renderTrace(t, trace, got); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s and %s", lessonGolden, lessonPicture)
		return
	}
	want, err := os.ReadFile(lessonGolden)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := withoutBatchNotes(got), withoutBatchNotes(want); !bytes.Equal(got, want) {
		t.Fatalf("the lesson's trace is not the one %s shows (%s); if the change is meant, "+
			"run go test -run TestLessonTrace -update-trace-png . and commit both files\n%s",
			lessonPicture, lessonGolden, firstDifference(got, want))
	}
}

// TestLessonPictureMatchesTrace checks that docs/trace.png was made from the
// trace in testdata/lesson.trace, which TestLessonTrace checks against the
// lesson: the picture carries the SHA-256 of the trace it was made from.
func TestLessonPictureMatchesTrace(t *testing.T) {
	trace, err := os.ReadFile(lessonGolden)
	if err != nil {
		t.Fatal(err)
	}
	picture, err := os.ReadFile(lessonPicture)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(trace)
	got, err := pngText(picture, pictureKey)
	if err != nil || got != hex.EncodeToString(sum[:]) {
		t.Errorf("%s was not made from %s (its %s is %q, %v): run go test -run TestLessonTrace -update-trace-png .",
			lessonPicture, lessonGolden, pictureKey, got, err)
	}
}

// typeSession runs the nc command of minute 1 and types into it as a person
// would: a command, then its reply, then the next; the message's lines
// without waiting. After the 221 it ends the input (Ctrl-D), and nc must
// then end.
func typeSession(t *testing.T, dir, command string, typed []string) {
	t.Helper()
	cmd := exec.Command("bash", "-c", command)
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A pipe of our own for its output: Wait, which runs meanwhile,
	// would close the one of StdoutPipe under the reader.
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		for sc := bufio.NewScanner(out); sc.Scan(); {
			lines <- sc.Text()
		}
	}()
	readReply := func(after string) string {
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("nc ended while waiting for the reply to %q", after)
				}
				if len(line) >= 4 && line[3] == ' ' {
					return line
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no reply to %q within 10 s", after)
			}
		}
	}
	readReply("the connection")
	inData := false
	for _, line := range typed {
		if _, err := io.WriteString(stdin, line+"\n"); err != nil {
			t.Fatal(err)
		}
		if inData && line != "." {
			continue
		}
		inData = strings.HasPrefix(readReply(line), "354")
	}
	stdin.Close() // Ctrl-D
	select {
	case err := <-done:
		done <- err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not end after the 221 and the end of its input", command)
	}
}

// normalizeTrace replaces what changes from run to run (times, ports, queue
// ids) and shows the escape character of colors as \e.
func normalizeTrace(trace []byte) []byte {
	out := string(trace)
	for _, v := range traceVariables {
		out = v.re.ReplaceAllString(out, v.with)
	}
	return []byte(out)
}

// batchNote is the trace's note on a command that came with more lines in
// the same read. Whether, and where in a batch, it appears depends on how
// nc -C writes its lines and how the kernel delivers them (sometimes a
// batch arrives in two reads), so the check leaves these lines out.
var batchNote = regexp.MustCompile(`(?m)^[^\n]*\] (\\e\[[0-9;]*m)?\* (not )?pipelining: [^\n]*\n`)

func withoutBatchNotes(trace []byte) []byte {
	return batchNote.ReplaceAll(trace, nil)
}

// firstDifference shows the first line where got and want differ.
func firstDifference(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n  lesson now: %q\n  pictured:   %q", i+1, gl, wl)
		}
	}
	return ""
}

// renderTrace turns the colored trace into docs/trace.png: aha makes it
// HTML, and a headless Chromium, with a fresh profile and no network
// features, takes a screenshot of it. The picture gets the SHA-256 of the
// normalized trace in a text chunk (TestLessonPictureMatchesTrace).
func renderTrace(t *testing.T, trace, normalized []byte) error {
	for _, tool := range []string{"aha", "chromium"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("-update-trace-png needs %s: %w", tool, err)
		}
	}
	work := t.TempDir()
	aha := exec.Command("aha", "--black", "--no-header")
	aha.Stdin = bytes.NewReader(trace)
	body, err := aha.Output()
	if err != nil {
		return fmt.Errorf("aha: %w", err)
	}
	const lineHeight, margin, width = 20, 16, 1760
	// Long lines wrap: the window is made taller than they can need, and
	// the picture is cut below the last line.
	lines := bytes.Count(trace, []byte("\n"))
	page := `<!DOCTYPE html><html><head><meta charset="utf-8"><style>` +
		`body{margin:0;background:#000;color:#fff}` +
		fmt.Sprintf(`pre{margin:%dpx;white-space:pre-wrap;font:14px/%dpx "DejaVu Sans Mono",monospace}`, margin, lineHeight) +
		`</style></head><body><pre>` + string(body) + `</pre></body></html>`
	html := filepath.Join(work, "trace.html")
	if err := os.WriteFile(html, []byte(page), 0o644); err != nil {
		return err
	}
	shot := filepath.Join(work, "trace.png")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	chromium := exec.CommandContext(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--hide-scrollbars", "--user-data-dir="+filepath.Join(work, "profile"),
		fmt.Sprintf("--window-size=%d,%d", width, 2*lines*lineHeight+2*margin),
		"--screenshot="+shot, "file://"+html)
	if out, err := chromium.CombinedOutput(); err != nil {
		return fmt.Errorf("chromium: %w\n%s", err, out)
	}
	picture, err := cropBelow(shot, margin)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(normalized)
	picture, err = withPNGText(picture, pictureKey, hex.EncodeToString(sum[:]))
	if err != nil {
		return err
	}
	return os.WriteFile(lessonPicture, picture, 0o644)
}

// cropBelow reads the PNG screenshot name and cuts it margin pixels below
// its last row that is not all background (the colour of its top left
// pixel).
func cropBelow(name string, margin int) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return nil, err
	}
	b := img.Bounds()
	background := img.At(b.Min.X, b.Min.Y)
	last := b.Min.Y
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if img.At(x, y) != background {
				last = y
				break
			}
		}
	}
	cut := image.Rect(b.Min.X, b.Min.Y, b.Max.X, min(b.Max.Y, last+1+margin))
	var out bytes.Buffer
	err = png.Encode(&out, img.(interface {
		SubImage(image.Rectangle) image.Image
	}).SubImage(cut))
	return out.Bytes(), err
}

// pngSignature starts every PNG file; chunks follow: length, type, data,
// CRC (the PNG specification, section 5).
var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// withPNGText returns png with a tEXt chunk key=value right after IHDR.
func withPNGText(file []byte, key, value string) ([]byte, error) {
	if !bytes.HasPrefix(file, pngSignature) || len(file) < len(pngSignature)+25 {
		return nil, errors.New("not a PNG file")
	}
	ihdrEnd := len(pngSignature) + 8 + int(binary.BigEndian.Uint32(file[len(pngSignature):])) + 4
	data := []byte(key + "\x00" + value)
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	chunk = append(chunk, "tEXt"...)
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	return slices.Concat(file[:ihdrEnd], chunk, file[ihdrEnd:]), nil
}

// pngText returns the value of the tEXt chunk key of png.
func pngText(file []byte, key string) (string, error) {
	if !bytes.HasPrefix(file, pngSignature) {
		return "", errors.New("not a PNG file")
	}
	for rest := file[len(pngSignature):]; len(rest) >= 12; {
		n := int(binary.BigEndian.Uint32(rest))
		if n > len(rest)-12 {
			break
		}
		typ, data := string(rest[4:8]), rest[8:8+n]
		if k, v, ok := bytes.Cut(data, []byte{0}); typ == "tEXt" && ok && string(k) == key {
			return string(v), nil
		}
		rest = rest[12+n:]
	}
	return "", fmt.Errorf("no tEXt chunk %q", key)
}
