package resolve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"
)

// Container start events from the Engine APIs (Docker's and podman's
// GET /events, a stream of JSON lines) and containerd's (its gRPC event
// stream, containerd_api.go), so that a protection that follows a
// container is applied again as soon as it starts instead of at the
// next periodic pass.

// Limits of the event streams.
const (
	// maxEventLine bounds one event (a container with many labels is a
	// few KiB); a longer one ends the stream, which is opened again.
	maxEventLine = 64 << 10
	// eventRetry paces reconnection to a runtime whose stream ended or
	// that is not there.
	eventRetry = 2 * time.Second
)

// startFilter asks for container start events only (a restart is a
// start too).
const startFilter = `{"type":["container"],"event":["start"]}`

// engineEvent is what deepwall reads of an Engine API event.
type engineEvent struct {
	Type   string `json:"Type"`
	Action string `json:"Action"`
	Actor  struct {
		ID         string            `json:"ID"`
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
}

// parseStart decodes one event line and returns the name of the
// container it says started ("" when it says something else).
func parseStart(line []byte) string {
	var ev engineEvent
	if json.Unmarshal(line, &ev) != nil || ev.Type != "container" || ev.Action != "start" {
		return ""
	}
	name := ev.Actor.Attributes["name"]
	if name == "" {
		name = ev.Actor.ID
	}
	if len(name) > maxContainerID {
		return ""
	}
	return name
}

// WatchStarts calls started(runtime, name) for every container that
// starts in Docker, podman or containerd (name: NAMESPACE/ID), until ctx
// is done; it returns when its watchers have. A runtime that is absent,
// or whose stream ends, is tried again every eventRetry.
func (r Resolver) WatchStarts(ctx context.Context, started func(runtime, name string)) {
	var wg sync.WaitGroup
	for _, e := range []engine{{name: "docker", socket: r.DockerSocket}, {name: "podman", socket: r.PodmanSocket},
		{name: "containerd", socket: r.ContainerdSocket}} {
		if e.socket == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := os.Stat(e.socket); err == nil {
					if e.name == "containerd" {
						_ = streamContainerdStarts(ctx, e.socket, func(runtime, name string) {
							r.ctrd.forget(name) // re-created: maybe new labels
							started(runtime, name)
						})
					} else {
						_ = streamStarts(ctx, e, started)
					}
				}
				select {
				case <-ctx.Done():
				case <-time.After(eventRetry):
				}
			}
		}()
	}
	wg.Wait()
}

// streamStarts reads e's event stream until it ends or ctx is done.
func streamStarts(ctx context.Context, e engine, started func(runtime, name string)) error {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		d := net.Dialer{Timeout: dockerAPITimeout}
		return d.DialContext(ctx, "unix", e.socket)
	}, MaxResponseHeaderBytes: maxAPIHeader, ResponseHeaderTimeout: dockerAPITimeout, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.name+"/events?filters="+url.QueryEscape(startFilter), nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: tr, // no Timeout: the stream is open-ended
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s events: %d", e.name, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	for sc.Scan() {
		if name := parseStart(sc.Bytes()); name != "" {
			started(e.name, name)
		}
	}
	return sc.Err()
}
