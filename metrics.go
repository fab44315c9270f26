package smtpd

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The management protocol, version 1 (docs/metrics-protocol.md):
// one UDP datagram per request and per response, big-endian throughout,
// authenticated with a truncated HMAC-SHA256 and a timestamp.

// Command is a management protocol command.
type Command uint8

// The commands of version 1. Their numbers never change; a new command takes
// the next number.
const (
	CmdHistoricalConnections Command = 0  // connections accepted since the counters began
	CmdConcurrentConnections Command = 1  // sessions open now
	CmdBytesTransferred      Command = 2  // bytes received and sent, all sessions
	CmdVerboseOn             Command = 3  // switch the session trace on; returns 1
	CmdVerboseOff            Command = 4  // switch the session trace off; returns 0
	CmdVerboseStatus         Command = 5  // 1 if the trace is on, else 0
	CmdMessages              Command = 6  // messages accepted (250 after DATA)
	CmdUptime                Command = 7  // seconds since the server started
	CmdGetMaxSize            Command = 8  // the message size limit in octets
	CmdSetMaxSize            Command = 9  // set the size limit to the argument (not 0); returns it
	CmdFilterStatus          Command = 10 // 1 if the content filter is on, else 0
	CmdFilterOn              Command = 11 // switch the content filter on; returns 1
	CmdFilterOff             Command = 12 // switch the content filter off; returns 0
)

// commandNames are the names metrics_client uses for the commands.
var commandNames = [...]string{
	CmdHistoricalConnections: "historical",
	CmdConcurrentConnections: "concurrent",
	CmdBytesTransferred:      "bytes",
	CmdVerboseOn:             "verbose-on",
	CmdVerboseOff:            "verbose-off",
	CmdVerboseStatus:         "verbose",
	CmdMessages:              "messages",
	CmdUptime:                "uptime",
	CmdGetMaxSize:            "max-size",
	CmdSetMaxSize:            "set-max-size",
	CmdFilterStatus:          "filter",
	CmdFilterOn:              "filter-on",
	CmdFilterOff:             "filter-off",
}

// Commands returns every command of the protocol, in number order.
func Commands() []Command {
	cmds := make([]Command, len(commandNames))
	for i := range cmds {
		cmds[i] = Command(i)
	}
	return cmds
}

// String returns the command's name as metrics_client spells it.
func (c Command) String() string {
	if int(c) < len(commandNames) {
		return commandNames[c]
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// TakesArgument reports whether the command uses its argument.
func (c Command) TakesArgument() bool { return c == CmdSetMaxSize }

// ParseCommand returns the command named name ("historical", "set-max-size"…).
func ParseCommand(name string) (Command, error) {
	for i, n := range commandNames {
		if n == name {
			return Command(i), nil
		}
	}
	return 0, fmt.Errorf("smtpd: unknown management command %q", name)
}

// Status is the status of a management protocol response.
type Status uint8

// The statuses of version 1.
const (
	StatusOK                   Status = 0
	StatusAuthFailed           Status = 1 // bad MAC, stale timestamp or replay
	StatusInvalidVersion       Status = 2
	StatusInvalidCommand       Status = 3
	StatusInvalidRequestLength Status = 4
	StatusUnexpectedError      Status = 5
	StatusInvalidArgument      Status = 6
)

var statusNames = [...]string{
	StatusOK:                   "OK",
	StatusAuthFailed:           "AUTH_FAILED",
	StatusInvalidVersion:       "INVALID_VERSION",
	StatusInvalidCommand:       "INVALID_COMMAND",
	StatusInvalidRequestLength: "INVALID_REQUEST_LENGTH",
	StatusUnexpectedError:      "UNEXPECTED_ERROR",
	StatusInvalidArgument:      "INVALID_ARGUMENT",
}

// String returns the status's name as the specification spells it.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// StatusError is the error of a request the server answered with a status
// other than StatusOK.
type StatusError struct {
	Command Command
	Status  Status
}

func (e *StatusError) Error() string {
	return "smtpd: management command " + e.Command.String() + ": " + e.Status.String()
}

// Wire layout (docs/metrics-protocol.md §3).
const (
	protoSignature = 0x534D // "SM"
	protoVersion   = 1

	requestSize  = 40
	responseSize = 32
	macSize      = 16

	requestMACOffset  = 24 // the request MAC covers bytes 0..23
	responseMACOffset = 16 // the response MAC covers bytes 0..15

	// replayWindow is how far a request's timestamp may be from the
	// server's clock, either way.
	replayWindow = 30 * time.Second
)

// request is a decoded management request.
type request struct {
	command   Command
	id        uint16
	argument  uint64
	timestamp uint64 // Unix milliseconds
}

// appendRequest appends the 40-byte wire form of r, signed with key.
func appendRequest(b []byte, r request, key []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, protoSignature)
	b = append(b, protoVersion, byte(r.command))
	b = binary.BigEndian.AppendUint16(b, r.id)
	b = append(b, 0, 0) // reserved
	b = binary.BigEndian.AppendUint64(b, r.argument)
	b = binary.BigEndian.AppendUint64(b, r.timestamp)
	return append(b, mac(key, b[start:])...)
}

// response is a decoded management response.
type response struct {
	status  Status
	id      uint16
	command Command
	value   uint64
}

// appendResponse appends the 32-byte wire form of r, signed with key.
func appendResponse(b []byte, r response, key []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, protoSignature)
	b = append(b, protoVersion, byte(r.status))
	b = binary.BigEndian.AppendUint16(b, r.id)
	b = append(b, byte(r.command), 0) // reserved
	b = binary.BigEndian.AppendUint64(b, r.value)
	return append(b, mac(key, b[start:])...)
}

// mac returns the first 16 bytes of HMAC-SHA256(key, data).
func mac(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)[:macSize]
}

// Why a datagram was not accepted, before any command ran.
var (
	errDrop       = errors.New("datagram dropped")    // no answer at all
	errBadLength  = errors.New("bad request length")  // StatusInvalidRequestLength
	errBadVersion = errors.New("unsupported version") // StatusInvalidVersion
	errBadMAC     = errors.New("bad MAC")             // StatusAuthFailed
)

// parseRequest checks a datagram's length, signature, version and MAC (in
// that order, in constant time for the MAC) and decodes it. The timestamp
// window and replays are the caller's business. On errBadLength and
// errBadVersion the returned request carries the identifier and command to
// echo in the answer; errDrop means no answer at all.
func parseRequest(b, key []byte) (request, error) {
	if len(b) < 3 || binary.BigEndian.Uint16(b) != protoSignature {
		return request{}, errDrop
	}
	if len(b) != requestSize {
		// Status 4 needs a valid signature and version, and is only
		// sent when the answer is no larger than the request: a short
		// datagram must not be amplified.
		if b[2] != protoVersion || len(b) < responseSize {
			return request{}, errDrop
		}
		return request{command: Command(b[3]), id: binary.BigEndian.Uint16(b[4:])}, errBadLength
	}
	r := request{
		command:   Command(b[3]),
		id:        binary.BigEndian.Uint16(b[4:]),
		argument:  binary.BigEndian.Uint64(b[8:]),
		timestamp: binary.BigEndian.Uint64(b[16:]),
	}
	if b[2] != protoVersion {
		return r, errBadVersion
	}
	if !hmac.Equal(mac(key, b[:requestMACOffset]), b[requestMACOffset:]) {
		return r, errBadMAC
	}
	return r, nil
}

// parseResponse checks a response datagram's length, signature, version and
// MAC and decodes it. On errBadMAC the decoded fields are returned too: a
// client whose key is wrong can still recognise its AUTH_FAILED answer.
func parseResponse(b, key []byte) (response, error) {
	switch {
	case len(b) != responseSize:
		return response{}, errBadLength
	case binary.BigEndian.Uint16(b) != protoSignature:
		return response{}, errDrop
	case b[2] != protoVersion:
		return response{}, errBadVersion
	}
	r := response{
		status:  Status(b[3]),
		id:      binary.BigEndian.Uint16(b[4:]),
		command: Command(b[6]),
		value:   binary.BigEndian.Uint64(b[8:]),
	}
	if !hmac.Equal(mac(key, b[:responseMACOffset]), b[responseMACOffset:]) {
		return r, errBadMAC
	}
	return r, nil
}
