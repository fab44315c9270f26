package smtpd_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// TestAccessLogTime checks that access.log says when the 250 was given, in
// milliseconds: a message held 300 ms between the end of its data and its
// reply (a data-end delay rule) is logged at least 300 ms after its data
// began, and no later than the client saw the 250.
func TestAccessLogTime(t *testing.T) {
	const hold = 300 * time.Millisecond
	plan, err := smtpd.ParseFaultPlan(strings.NewReader("data-end delay=300ms\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := smtpdtest.NewServer(t, smtpdtest.Faults(plan))
	if r := sendOne(t, srv.Addr, "alice@example.org", []byte("Subject: when\r\n\r\nhi\r\n")); r.Code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	replied := time.Now()
	msgs, err := srv.WaitMessages(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(srv.DataDir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	var entry struct{ Time string }
	if err := json.Unmarshal(data, &entry); err != nil {
		t.Fatalf("access.log %q: %v", data, err)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(entry.Time) {
		t.Fatalf("access.log time %q: want UTC with exactly three decimals (milliseconds)", entry.Time)
	}
	logged, err := time.Parse(time.RFC3339, entry.Time)
	if err != nil {
		t.Fatal(err)
	}
	dataBegan := msgs[0].Time.Truncate(time.Millisecond)
	if logged.Before(dataBegan.Add(hold)) || logged.After(replied) {
		t.Errorf("access.log time %v: want the time of the 250 reply, between %v (the data began, plus the %v hold) and %v (the client had it)",
			logged, dataBegan.Add(hold), hold, replied)
	}
}
