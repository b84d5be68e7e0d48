package eve

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// Defaults of the outputs beside the file.
const (
	// DefaultOutputQueue is how many messages an output holds while its
	// receiver is slow or away; past it new ones are dropped and counted.
	DefaultOutputQueue = 4096
	// outputWriteTimeout bounds one write to a receiver that stopped
	// reading; the connection is then closed and dialled again.
	outputWriteTimeout = 5 * time.Second
	// outputRetry is the pause between failed dials.
	outputRetry = time.Second
	// syslogFacility is local5 (21), Suricata's default for its syslog
	// output.
	syslogFacility = 21
	// maxSyslogHost bounds the HOSTNAME field (RFC 5424: 255).
	maxSyslogHost = 255
)

// OutputKind names an output beside the file.
type OutputKind string

// Output kinds.
const (
	// OutputSyslog sends each event as an RFC 5424 message (the JSON as
	// MSG) over unix datagrams, UDP or TCP (octet counting, RFC 6587).
	OutputSyslog OutputKind = "syslog"
	// OutputSocket writes each event as a JSON line to a unix stream
	// socket another program listens on (Suricata's unix_stream).
	OutputSocket OutputKind = "socket"
)

// Output configures one output beside the file.
type Output struct {
	Kind    OutputKind
	Network string // syslog: unixgram, udp or tcp; socket: unix
	Address string // a path, or host:port
	Queue   int    // 0 = DefaultOutputQueue
}

// String names the output as its flag does: syslog+udp://host:514,
// socket:/run/x.sock.
func (o Output) String() string {
	if o.Kind == OutputSocket {
		return "socket:" + o.Address
	}
	n := o.Network
	if n == "unixgram" {
		n = "unix"
	}
	return string(o.Kind) + "+" + n + "://" + o.Address
}

// ErrOutput is wrapped by the errors of ParseSyslog and ParseSocket.
var ErrOutput = errors.New("invalid output")

// ParseSyslog parses a syslog destination: unix:///dev/log,
// udp://host:514 or tcp://host:601.
func ParseSyslog(s string) (Output, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Output{}, fmt.Errorf("%w: syslog %q: %v", ErrOutput, s, err)
	}
	o := Output{Kind: OutputSyslog}
	switch u.Scheme {
	case "unix":
		o.Network, o.Address = "unixgram", u.Path
		if u.Path == "" || u.Host != "" {
			return Output{}, fmt.Errorf("%w: syslog %q: want unix:///path/to/socket", ErrOutput, s)
		}
	case "udp", "tcp":
		o.Network, o.Address = u.Scheme, u.Host
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" || u.Path != "" {
			return Output{}, fmt.Errorf("%w: syslog %q: want %s://host:port", ErrOutput, s, u.Scheme)
		}
	default:
		return Output{}, fmt.Errorf("%w: syslog %q: want unix:///path, udp://host:port or tcp://host:port", ErrOutput, s)
	}
	return o, nil
}

// ParseSocket checks a unix stream socket path for OutputSocket.
func ParseSocket(path string) (Output, error) {
	if path == "" || path[0] != '/' {
		return Output{}, fmt.Errorf("%w: event socket %q: want an absolute path", ErrOutput, path)
	}
	return Output{Kind: OutputSocket, Network: "unix", Address: path}, nil
}

// OutputStats are an output's counters.
type OutputStats struct {
	Name    string // Output.String()
	Sent    uint64 // messages written to the receiver
	Dropped uint64 // refused (queue full) or lost in a failed write
}

// output is one running output: a bounded queue the log's writer fills
// without blocking, and a goroutine that (re)connects and writes.
type output struct {
	cfg   Output
	host  string // syslog HOSTNAME
	pid   string
	queue chan []byte
	done  chan struct{}

	sent, dropped atomic.Uint64
}

func newOutput(cfg Output) *output {
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultOutputQueue
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "-"
	}
	if len(host) > maxSyslogHost {
		host = host[:maxSyslogHost]
	}
	o := &output{cfg: cfg, host: host, pid: strconv.Itoa(os.Getpid()),
		queue: make(chan []byte, cfg.Queue), done: make(chan struct{})}
	go o.run()
	return o
}

// offer queues the message for ev (line is its JSON line, newline
// included, shared and not to be modified); it never blocks.
func (o *output) offer(ev *Event, line []byte) {
	msg := line
	if o.cfg.Kind == OutputSyslog {
		msg = o.syslogMessage(ev, line[:len(line)-1])
	}
	select {
	case o.queue <- msg:
	default:
		o.dropped.Add(1)
	}
}

func (o *output) close() {
	close(o.queue)
	<-o.done
}

func (o *output) stats() OutputStats {
	return OutputStats{Name: o.cfg.String(), Sent: o.sent.Load(), Dropped: o.dropped.Load()}
}

func (o *output) run() {
	defer close(o.done)
	var c net.Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	var lastDial time.Time
	for msg := range o.queue {
		if c == nil {
			// Dial at most once per outputRetry: while the receiver is
			// away messages are dropped (counted), not held.
			if time.Since(lastDial) < outputRetry {
				o.dropped.Add(1)
				continue
			}
			lastDial = time.Now()
			var err error
			if c, err = net.DialTimeout(o.cfg.Network, o.cfg.Address, outputWriteTimeout); err != nil {
				c = nil
				o.dropped.Add(1)
				continue
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(outputWriteTimeout))
		if _, err := c.Write(o.frame(msg)); err != nil {
			o.dropped.Add(1)
			c.Close()
			c = nil
			continue
		}
		o.sent.Add(1)
	}
}

// frame adds TCP syslog's octet count (RFC 6587 3.4.1); datagrams and
// JSON lines go as they are.
func (o *output) frame(msg []byte) []byte {
	if o.cfg.Kind == OutputSyslog && o.cfg.Network == "tcp" {
		b := strconv.AppendInt(make([]byte, 0, len(msg)+21), int64(len(msg)), 10)
		return append(append(b, ' '), msg...)
	}
	return msg
}

// syslogMessage formats ev as RFC 5424: <PRI>1 TIMESTAMP HOSTNAME
// deepwall PROCID MSGID - MSG, with MSGID the event type and MSG its
// JSON. The severity follows the event: an alert's severity (1 → crit,
// 2 → err, 3 → warning, 4 → notice), warning for a drop, info for a
// flow.
func (o *output) syslogMessage(ev *Event, line []byte) []byte {
	sev := 6 // info
	switch {
	case ev.Alert != nil:
		sev = min(max(ev.Alert.Severity, 1), 4) + 1
	case ev.Drop != nil:
		sev = 4
	}
	b := make([]byte, 0, len(line)+128)
	b = append(b, '<')
	b = strconv.AppendInt(b, syslogFacility*8+int64(sev), 10)
	b = append(b, ">1 "...)
	if t := ev.Timestamp.Time(); !t.IsZero() {
		b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z")
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	b = append(b, o.host...)
	b = append(b, " deepwall "...)
	b = append(b, o.pid...)
	b = append(b, ' ')
	if ev.EventType != "" && len(ev.EventType) <= 32 {
		b = append(b, ev.EventType...)
	} else {
		b = append(b, '-')
	}
	b = append(b, " - "...)
	return append(b, line...)
}
