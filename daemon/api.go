package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/vnetd/vnetd/api"
	"github.com/vnetd/vnetd/conf"
)

// maxBody bounds request bodies: network XML is limited to conf.MaxInputSize.
const maxBody = conf.MaxInputSize + 4096

// Handler serves the control API (docs/api.md) for m.
func Handler(m *Manager, log *slog.Logger) http.Handler {
	h := &handler{m: m, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/networks", h.list)
	mux.HandleFunc("GET /v1/events", h.events)
	mux.HandleFunc("POST /v1/networks", h.define)
	mux.HandleFunc("GET /v1/networks/{id}", h.info)
	mux.HandleFunc("DELETE /v1/networks/{id}", h.undefine)
	mux.HandleFunc("GET /v1/networks/{id}/xml", h.xml)
	mux.HandleFunc("POST /v1/networks/{id}/start", h.start)
	mux.HandleFunc("POST /v1/networks/{id}/destroy", h.destroy)
	mux.HandleFunc("PUT /v1/networks/{id}/autostart", h.autostart)
	mux.HandleFunc("POST /v1/networks/{id}/update", h.update)
	mux.HandleFunc("GET /v1/networks/{id}/leases", h.leases)
	mux.HandleFunc("GET /v1/networks/{id}/ports", h.listPorts)
	mux.HandleFunc("POST /v1/networks/{id}/ports", h.createPort)
	mux.HandleFunc("GET /v1/networks/{id}/ports/{port}/xml", h.portXML)
	mux.HandleFunc("DELETE /v1/networks/{id}/ports/{port}", h.deletePort)
	mux.HandleFunc("PUT /v1/networks/{id}/ports/{port}/bandwidth", h.portBandwidth)
	// Go's profiler, for diagnosing a busy daemon; the socket is root's
	// (or --socket-group's) only, like the rest of the API.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.Handle("GET /metrics", m.MetricsHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, &api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path)})
	})
	return h.logged(mux)
}

type handler struct {
	m   *Manager
	log *slog.Logger
}

func (h *handler) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		h.m.metrics.observe(r, rec.status, rec.apiError)
		h.log.Debug("api request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "took", time.Since(began))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status   int
	apiError string // the error code answered, if any
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController flush the event stream.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

var statusOf = map[string]int{
	api.CodeInvalidRequest:    http.StatusBadRequest,
	api.CodeInvalidDefinition: http.StatusUnprocessableEntity,
	api.CodeNotFound:          http.StatusNotFound,
	api.CodeConflict:          http.StatusConflict,
	api.CodeNotActive:         http.StatusConflict,
	api.CodeUnsupported:       http.StatusBadRequest,
	api.CodeOperationFailed:   http.StatusInternalServerError,
}

func writeError(w http.ResponseWriter, status int, e *api.Error) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.apiError = e.Code
	}
	writeJSON(w, status, api.ErrorBody{Error: e})
}

func (h *handler) fail(w http.ResponseWriter, err error) {
	e := APIError(err)
	status, ok := statusOf[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	writeError(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fail(api.CodeInvalidRequest, "", fmt.Errorf("request body over %d bytes", maxBody))
		}
		return nil, fail(api.CodeInvalidRequest, "", err)
	}
	return data, nil
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fail(api.CodeInvalidRequest, "", fmt.Errorf("query parameter %s=%q is not a boolean", name, v))
	}
	return b, nil
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	all, err := boolParam(r, "all")
	if err != nil {
		h.fail(w, err)
		return
	}
	infos, err := h.m.List()
	if err != nil {
		h.fail(w, err)
		return
	}
	out := []api.NetworkInfo{}
	for _, i := range infos {
		if all || i.Active {
			out = append(out, i)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// define stores a definition; with ?transient=true it creates and starts a
// transient network instead (net-create).
func (h *handler) define(w http.ResponseWriter, r *http.Request) {
	transient, err := boolParam(r, "transient")
	if err != nil {
		h.fail(w, err)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		h.fail(w, err)
		return
	}
	var n *conf.Network
	if transient {
		n, err = h.m.Create(body)
	} else {
		n, err = h.m.Define(body)
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	info, err := h.m.Info(n.Name)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

func (h *handler) info(w http.ResponseWriter, r *http.Request) {
	info, err := h.m.Info(r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (h *handler) undefine(w http.ResponseWriter, r *http.Request) {
	if err := h.m.Undefine(r.PathValue("id")); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) xml(w http.ResponseWriter, r *http.Request) {
	inactive, err := boolParam(r, "inactive")
	if err != nil {
		h.fail(w, err)
		return
	}
	data, err := h.m.XML(r.PathValue("id"), inactive)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Write(data)
}

func (h *handler) start(w http.ResponseWriter, r *http.Request) {
	h.lifecycle(w, r, h.m.Start)
}

func (h *handler) destroy(w http.ResponseWriter, r *http.Request) {
	h.lifecycle(w, r, h.m.Destroy)
}

func (h *handler) lifecycle(w http.ResponseWriter, r *http.Request, op func(string) error) {
	id := r.PathValue("id")
	if err := op(id); err != nil {
		h.fail(w, err)
		return
	}
	info, err := h.m.Info(id)
	if err != nil {
		// a destroyed transient network is gone
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (h *handler) autostart(w http.ResponseWriter, r *http.Request) {
	var req api.AutostartRequest
	if !h.decode(w, r, &req) {
		return
	}
	if err := h.m.SetAutostart(r.PathValue("id"), req.Autostart); err != nil {
		h.fail(w, err)
		return
	}
	h.info(w, r)
}

func (h *handler) update(w http.ResponseWriter, r *http.Request) {
	var req api.UpdateRequest
	if !h.decode(w, r, &req) {
		return
	}
	res, err := h.m.Update(r.PathValue("id"), req)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := readBody(w, r)
	if err != nil {
		h.fail(w, err)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		h.fail(w, fail(api.CodeInvalidRequest, r.PathValue("id"), fmt.Errorf("request body: %w", err)))
		return false
	}
	// One value: "{} {...}" or trailing garbage is a malformed request, not
	// the first half of one.
	if _, err := dec.Token(); err != io.EOF {
		h.fail(w, fail(api.CodeInvalidRequest, r.PathValue("id"), errors.New("request body: data after the JSON value")))
		return false
	}
	return true
}

func (h *handler) listPorts(w http.ResponseWriter, r *http.Request) {
	ports, err := h.m.ListPorts(r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ports)
}

// createPort: the body is <networkport> XML; query parameters attach=IFNAME
// or tap=IFNAME (with tapOwner=UID, multiQueue=true) say how to plug it.
func (h *handler) createPort(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opt := PortOptions{Attach: q.Get("attach"), Tap: q.Get("tap"), TapOwner: -1}
	if v := q.Get("tapOwner"); v != "" {
		uid, err := strconv.Atoi(v)
		if err != nil || uid < 0 {
			h.fail(w, fail(api.CodeInvalidRequest, r.PathValue("id"), fmt.Errorf("tapOwner=%q is not a user id", v)))
			return
		}
		opt.TapOwner = uid
	}
	mq, err := boolParam(r, "multiQueue")
	if err != nil {
		h.fail(w, err)
		return
	}
	opt.MultiQueue = mq
	body, err := readBody(w, r)
	if err != nil {
		h.fail(w, err)
		return
	}
	p, err := h.m.CreatePort(r.PathValue("id"), body, opt)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"uuid": p.UUID.String()})
}

func (h *handler) portXML(w http.ResponseWriter, r *http.Request) {
	data, err := h.m.PortXML(r.PathValue("id"), r.PathValue("port"))
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Write(data)
}

func (h *handler) deletePort(w http.ResponseWriter, r *http.Request) {
	if err := h.m.DeletePort(r.PathValue("id"), r.PathValue("port")); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) portBandwidth(w http.ResponseWriter, r *http.Request) {
	var req api.BandwidthRequest
	if !h.decode(w, r, &req) {
		return
	}
	var bw *conf.Bandwidth
	if req.Inbound != nil || req.Outbound != nil {
		bw = &conf.Bandwidth{Inbound: rate(req.Inbound), Outbound: rate(req.Outbound)}
	}
	if err := h.m.SetPortBandwidth(r.PathValue("id"), r.PathValue("port"), bw); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func rate(r *api.Rate) *conf.Rate {
	if r == nil {
		return nil
	}
	return &conf.Rate{Average: r.Average, Peak: r.Peak, Burst: r.Burst, Floor: r.Floor}
}

func (h *handler) leases(w http.ResponseWriter, r *http.Request) {
	list, err := h.m.Leases(r.PathValue("id"), r.URL.Query().Get("mac"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}
