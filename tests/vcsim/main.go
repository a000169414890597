// Command vcsim runs govmomi's vCenter simulator for vmpooler's tests.
//
// It is built against Debian's golang-github-vmware-govmomi-dev (0.24.2) in
// GOPATH mode, so it needs no module downloads (see scripts/build-vcsim).
//
// On top of the stock simulator it makes VM clones behave the way vmpooler
// sees them on a real vSphere with VMware Tools in the template:
//
//   - CloneVM_Task returns a running task at once and the clone appears when
//     the task completes (optionally after -clone-delay), instead of the
//     simulator's synchronous clone;
//   - spec.powerOn is honoured (the stock simulator ignores it);
//   - the clone spec's config.annotation reaches the clone (the stock clone
//     drops it; vmpooler's ownership mark lives there);
//   - a powered-on clone reports guest.hostName (from the clone spec's
//     extraConfig "guestinfo.hostname"), a 127.0.0.x guest.ipAddress and
//     running tools, which the stock simulator never sets by itself;
//   - a share of clones can be made to fail (-clone-fail-percent, or at run
//     time through the control endpoint): the task ends in the error state
//     with a SystemError fault and no VM is created.
//
// Only VMs created with -template get this behaviour: they are replaced in
// the simulator's registry by a wrapper type that overrides CloneVMTask (the
// extension mechanism the simulator documents in example_extend_test.go).
// Clones themselves are left as plain simulator VMs on purpose: parts of the
// simulator (snapshots, for one) type-assert registry objects to
// *simulator.VirtualMachine and would panic on a wrapper.
//
// Output on stdout, one KEY=VALUE per line, VCSIM_URL last (it means ready):
//
//	VCSIM_CONTROL=http://127.0.0.1:PORT
//	VCSIM_URL=https://user:pass@127.0.0.1:PORT/sdk
//
// The process serves until SIGTERM or SIGINT and then exits 0.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// control holds the clone behaviour that tests may change while the
// simulator runs, plus counters they can read back.
type control struct {
	mu          sync.Mutex
	delay       time.Duration
	failPercent int
	rnd         *rand.Rand
	ipSeq       int
	clashes     int // clones still to be refused with FileAlreadyExists

	Started   int `json:"clones_started"`
	Succeeded int `json:"clones_succeeded"`
	Failed    int `json:"clones_failed"`

	calls map[string]int // SOAP calls answered, by method (see counting)
}

// decide fixes the fate of one clone when the call arrives, so a test that
// sets percent=100 and then clones gets a failure even if it changes the
// setting again before the delay has passed.
func (c *control) decide() (time.Duration, bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Started++
	fail := c.failPercent > 0 && c.rnd.Intn(100) < c.failPercent
	clash := c.clashes > 0
	if clash {
		c.clashes--
	}
	return c.delay, fail, clash
}

func (c *control) done(ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.Succeeded++
	} else {
		c.Failed++
	}
}

// nextIP hands out distinct loopback addresses so that code resolving or
// connecting to a clone's IP stays on this machine.
func (c *control) nextIP() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ip := fmt.Sprintf("127.0.0.%d", 2+c.ipSeq%253)
	c.ipSeq++
	return ip
}

func (c *control) state() map[string]interface{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := make(map[string]int, len(c.calls))
	for method, n := range c.calls {
		calls[method] = n
	}
	return map[string]interface{}{
		"clone_delay_ms":     c.delay.Milliseconds(),
		"clone_fail_percent": c.failPercent,
		"clones_started":     c.Started,
		"clones_succeeded":   c.Succeeded,
		"clones_failed":      c.Failed,
		"clone_clashes_left": c.clashes,
		"soap_calls":         calls,
	}
}

// soapMethod finds the method of a SOAP request: the first element in its Body.
var soapMethod = regexp.MustCompile(`<(?:[A-Za-z0-9_]+:)?Body[^>]*>\s*<(?:[A-Za-z0-9_]+:)?([A-Za-z0-9_]+)`)

// counting wraps the simulator's handler to count the SOAP calls it answers,
// by method: benchmarks read how many calls a client makes (GET /state).
func (c *control) counting(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Body != nil {
			body, err := io.ReadAll(r.Body)
			_ = r.Body.Close()
			if m := soapMethod.FindSubmatch(body); err == nil && m != nil {
				c.mu.Lock()
				c.calls[string(m[1])]++
				c.mu.Unlock()
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}

// templateVM replaces a template in simulator.Map; the simulator dispatches
// SOAP methods by reflection on the registered object, so this CloneVMTask
// shadows the embedded one while every other method is inherited.
//
// The VM is embedded by value, not by pointer: the property collector finds
// an object's properties by descending through the first field of each
// wrapper struct until it reaches the mo type, and panics on a pointer.
type templateVM struct {
	simulator.VirtualMachine
	ctl *control
}

func (t *templateVM) CloneVMTask(ctx *simulator.Context, req *types.CloneVM_Task) soap.HasFault {
	delay, fail, clash := t.ctl.decide()

	// The request's Context is not touched again by the server once the call
	// returns, but take a copy anyway since the work runs after that.
	cctx := *ctx
	self := t.Self

	task := simulator.CreateTask(self, "cloneVm", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if fail {
			return nil, &types.SystemError{Reason: "vcsim: injected clone failure"}
		}
		if clash {
			// What vSphere answers when the datastore still holds a folder of the clone's name (a
			// leftover of a VM of that name): the clone makes nothing.
			return nil, &types.FileAlreadyExists{FileFault: types.FileFault{File: "[LocalDS_0] " + req.Name}}
		}
		return t.clone(&cctx, req)
	})
	// CreateTask names it "CloneVm". pyVmomi resolves info.name as a WSDL
	// method name, and pyVim's WaitForTask dereferences it while the task is
	// running (the stock clone is never seen running), failing on an unknown
	// name; so report the method's WSDL name as vCenter does.
	simulator.Map.WithLock(task, func() {
		task.Info.Name = "CloneVM_Task"
		task.Info.DescriptionId = "VirtualMachine.clone"
	})

	// Real vCenter answers CloneVM_Task with a queued/running task and
	// finishes it later; the stock simulator finishes it inside the call.
	// Running it on a goroutine keeps the client's task polling realistic
	// and lets the delay overlap between concurrent clones.
	go func() {
		setTask(task, []types.PropertyChange{
			{Name: "info.startTime", Val: time.Now()},
			{Name: "info.state", Val: types.TaskInfoStateRunning},
		})
		if delay > 0 {
			time.Sleep(delay)
		}
		var res types.AnyType
		var fault types.BaseMethodFault
		// The clone reads the template, so hold its lock as the simulator
		// does for a direct call (cctx.Caller is the template, so the
		// simulator's internal ctx.WithLock calls do not lock it again).
		simulator.Map.WithLock(self, func() {
			// A panic here would kill the whole process (the stock clone
			// panics in an HTTP handler, where net/http recovers it), so
			// turn it into a failed task instead.
			defer func() {
				if r := recover(); r != nil {
					fault = &types.SystemError{Reason: fmt.Sprintf("vcsim: clone panicked: %v", r)}
				}
			}()
			res, fault = task.Execute(task)
		})
		finishTask(task, res, fault)
		t.ctl.done(fault == nil)
		if fault != nil {
			logger.Printf("clone %q of %s failed: %T", req.Name, self.Value, fault)
		}
	}()

	return &methods.CloneVM_TaskBody{
		Res: &types.CloneVM_TaskResponse{Returnval: task.Self},
	}
}

// clone runs the simulator's own clone, then plays the part of vSphere and
// VMware Tools: power on when asked, report hostname, IP and tools status.
func (t *templateVM) clone(ctx *simulator.Context, req *types.CloneVM_Task) (types.AnyType, types.BaseMethodFault) {
	// The stock clone hands the template's own device objects to the new VM
	// (after blanking the disk file names in place), so template and clones
	// share them and a clone's Destroy_Task can then find a disk with no
	// file and panic. Give it copies; the template lock is held here.
	orig := t.Config.Hardware.Device
	devices := deepCopy(reflect.ValueOf(orig)).Interface().([]types.BaseVirtualDevice)
	for _, d := range devices {
		// vSphere gives a clone's NICs new MAC addresses; an empty one makes
		// the simulator generate one instead of copying the template's.
		if nic, ok := d.(types.BaseVirtualEthernetCard); ok {
			if c := nic.GetVirtualEthernetCard(); c.AddressType != string(types.VirtualEthernetCardMacTypeManual) {
				c.MacAddress = ""
			}
		}
	}
	t.Config.Hardware.Device = devices
	defer func() { t.Config.Hardware.Device = orig }()

	// vSphere refuses a second VM of the same name in a folder; this
	// simulator version would create it.
	if f, ok := simulator.Map.Get(req.Folder).(*simulator.Folder); ok {
		var dup mo.Entity
		simulator.Map.WithLock(f, func() { dup = simulator.Map.FindByName(req.Name, f.ChildEntity) })
		if dup != nil {
			return nil, &types.DuplicateName{Name: req.Name, Object: dup.Reference()}
		}
	}

	body := t.VirtualMachine.CloneVMTask(ctx, withAnnotation(req, t.Config.Annotation)).(*methods.CloneVM_TaskBody)
	if body.Fault_ != nil {
		if f, ok := body.Fault_.Detail.Fault.(types.BaseMethodFault); ok {
			return nil, f
		}
		return nil, &types.SystemError{Reason: body.Fault_.String}
	}
	inner := simulator.Map.Get(body.Res.Returnval).(*simulator.Task)
	if inner.Info.Error != nil {
		return nil, inner.Info.Error.Fault
	}
	ref := inner.Info.Result.(types.ManagedObjectReference)

	if !req.Spec.PowerOn {
		return ref, nil
	}

	vm := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	var fault types.BaseMethodFault
	simulator.Map.WithLock(vm, func() {
		pbody := vm.PowerOnVMTask(ctx, &types.PowerOnVM_Task{This: ref}).(*methods.PowerOnVM_TaskBody)
		if pbody.Fault_ != nil {
			fault = &types.SystemError{Reason: pbody.Fault_.String}
			return
		}
		ptask := simulator.Map.Get(pbody.Res.Returnval).(*simulator.Task)
		if ptask.Info.Error != nil {
			fault = ptask.Info.Error.Fault
			return
		}
		t.reportGuest(vm, req)
	})
	if fault != nil {
		return nil, fault
	}
	return ref, nil
}

// withAnnotation is req with the annotation vSphere gives the clone: the
// spec's config.annotation, else the source's (`source`). The stock clone
// builds the new VM's config without either; its "SET.<property>" extraConfig
// keys set a property while the VM is being created, so the note is there
// from the clone's first moments, as on vSphere.
func withAnnotation(req *types.CloneVM_Task, source string) *types.CloneVM_Task {
	var config types.VirtualMachineConfigSpec
	if req.Spec.Config != nil {
		config = *req.Spec.Config
	}
	annotation := source
	if config.Annotation != "" {
		annotation = config.Annotation
	}
	if annotation == "" {
		return req
	}
	config.ExtraConfig = append(append([]types.BaseOptionValue(nil), config.ExtraConfig...),
		&types.OptionValue{Key: "SET.config.annotation", Value: annotation},
		&types.OptionValue{Key: "SET.summary.config.annotation", Value: annotation})
	copied := *req
	copied.Spec.Config = &config
	return &copied
}

// reportGuest sets what VMware Tools would report once the guest has booted.
// Only powered-on clones get it, as tools only report from a running guest.
func (t *templateVM) reportGuest(vm *simulator.VirtualMachine, req *types.CloneVM_Task) {
	hostname := req.Name // a guest without guestinfo.hostname keeps its VM name
	if req.Spec.Config != nil {
		for _, o := range req.Spec.Config.ExtraConfig {
			v := o.GetOptionValue()
			if v.Key == "guestinfo.hostname" {
				if s, ok := v.Value.(string); ok && s != "" {
					hostname = s
				}
			}
		}
	}
	ip := t.ctl.nextIP()

	changes := []types.PropertyChange{
		{Name: "guest.hostName", Val: hostname},
		{Name: "guest.ipAddress", Val: ip},
		{Name: "guest.guestState", Val: "running"},
		{Name: "guest.toolsStatus", Val: types.VirtualMachineToolsStatusToolsOk},
		{Name: "guest.toolsRunningStatus", Val: string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)},
		{Name: "guest.toolsVersionStatus2", Val: string(types.VirtualMachineToolsVersionStatusGuestToolsCurrent)},
		{Name: "summary.guest.hostName", Val: hostname},
		{Name: "summary.guest.ipAddress", Val: ip},
		{Name: "summary.guest.toolsStatus", Val: types.VirtualMachineToolsStatusToolsOk},
		{Name: "summary.guest.toolsRunningStatus", Val: string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)},
	}
	if vm.Guest != nil && len(vm.Guest.Net) > 0 {
		net := append([]types.GuestNicInfo(nil), vm.Guest.Net...)
		net[0].IpAddress = []string{ip}
		changes = append(changes, types.PropertyChange{Name: "guest.net", Val: net})
	}
	simulator.Map.Update(vm, changes)
}

// deepCopy returns a copy of v that shares no pointer, slice or map with it.
// The vim25 types hold only exported fields; structs with unexported ones
// (time.Time) are copied as values.
func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Ptr, reflect.Interface:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		inner := deepCopy(v.Elem())
		if v.Kind() == reflect.Interface {
			c := reflect.New(v.Type()).Elem()
			c.Set(inner)
			return c
		}
		c := reflect.New(v.Type().Elem())
		c.Elem().Set(inner)
		return c
	case reflect.Struct:
		c := reflect.New(v.Type()).Elem()
		c.Set(v)
		for i := 0; i < v.NumField(); i++ {
			if c.Field(i).CanSet() {
				c.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
		return c
	case reflect.Slice:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			c.Index(i).Set(deepCopy(v.Index(i)))
		}
		return c
	case reflect.Map:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		c := reflect.MakeMapWithSize(v.Type(), v.Len())
		iter := v.MapRange()
		for iter.Next() {
			c.SetMapIndex(iter.Key(), deepCopy(iter.Value()))
		}
		return c
	default:
		return v
	}
}

// propertyCollector replaces the root PropertyCollector to fix lost updates
// in this simulator version, which only show up once tasks finish after
// CloneVM_Task has returned (the stock ones never do):
//
//   - every session gets its own instance of the root collector, but all of
//     them register as update handlers under the same reference, so only the
//     session that called WaitForUpdates last receives any update and the
//     others (pyVim's WaitForTask in another connection) wait forever;
//   - a first WaitForUpdates collects the current state before registering,
//     so a change in between is lost.
//
// Each session's instance therefore registers a listener with a reference of
// its own before the first wait. Sessions get instances of whatever type is
// registered for the root collector (made by reflection, zero valued), so
// the stock collector is embedded by value.
type propertyCollector struct {
	simulator.PropertyCollector
	once sync.Once
}

func (pc *propertyCollector) WaitForUpdatesEx(ctx *simulator.Context, r *types.WaitForUpdatesEx) soap.HasFault {
	pc.listen(ctx, r.Version)
	defer pc.unshare(r.Version)
	return pc.PropertyCollector.WaitForUpdatesEx(ctx, r)
}

// WaitForUpdates (what pyVmomi calls) is overridden too: the stock one calls
// the stock WaitForUpdatesEx directly.
func (pc *propertyCollector) WaitForUpdates(ctx *simulator.Context, r *types.WaitForUpdates) soap.HasFault {
	pc.listen(ctx, r.Version)
	defer pc.unshare(r.Version)
	return pc.PropertyCollector.WaitForUpdates(ctx, r)
}

func (pc *propertyCollector) listen(ctx *simulator.Context, version string) {
	if version != "" || ctx.Session == nil {
		return
	}
	pc.once.Do(func() {
		l := &updateListener{pc: &pc.PropertyCollector}
		// Session.Put gives it a session-unique reference, and Logout drops
		// the handlers of a session's objects.
		ctx.Session.Put(l)
		simulator.Map.AddHandler(l)
	})
}

// unshare drops the handler the stock first wait registers under the shared
// reference: every session's listener already delivers those updates, so it
// would only duplicate them.
func (pc *propertyCollector) unshare(version string) {
	if version == "" {
		simulator.Map.RemoveHandler(&pc.PropertyCollector)
	}
}

// updateListener forwards inventory changes to one session's collector.
type updateListener struct {
	Self types.ManagedObjectReference
	pc   *simulator.PropertyCollector
}

func (l *updateListener) Reference() types.ManagedObjectReference { return l.Self }
func (l *updateListener) PutObject(o mo.Reference)                { l.pc.PutObject(o) }
func (l *updateListener) RemoveObject(ref types.ManagedObjectReference) {
	l.pc.RemoveObject(ref)
}
func (l *updateListener) UpdateObject(o mo.Reference, changes []types.PropertyChange) {
	l.pc.UpdateObject(o, changes)
}

// setTask updates a task under its lock, since property collectors read it
// under that lock from other goroutines.
func setTask(task *simulator.Task, changes []types.PropertyChange) {
	simulator.Map.WithLock(task, func() { simulator.Map.Update(task, changes) })
}

// finishTask mirrors simulator.Task.Run's completion, but with a readable
// localized message (Task.Run puts the Go type name there), which is what
// pyVmomi shows as the fault's msg.
func finishTask(task *simulator.Task, res types.AnyType, fault types.BaseMethodFault) {
	state := types.TaskInfoStateSuccess
	var lf interface{}
	if fault != nil {
		state = types.TaskInfoStateError
		lf = types.LocalizedMethodFault{Fault: fault, LocalizedMessage: faultMessage(fault)}
	}
	setTask(task, []types.PropertyChange{
		{Name: "info.completeTime", Val: time.Now()},
		{Name: "info.state", Val: state},
		{Name: "info.result", Val: res},
		{Name: "info.error", Val: lf},
	})
}

// faultMessage words the faults a clone can end with roughly as vCenter does.
func faultMessage(fault types.BaseMethodFault) string {
	switch f := fault.(type) {
	case *types.SystemError:
		return f.Reason
	case *types.InvalidArgument:
		return "A specified parameter was not correct: " + f.InvalidProperty
	case *types.DuplicateName:
		return fmt.Sprintf("The name '%s' already exists.", f.Name)
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", fault), "*types.")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.Trim(strings.TrimSpace(p), "/"); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseMethodDelay reads "Method=ms,..." for simulator.DelayConfig.MethodDelay.
func parseMethodDelay(s string) (map[string]int, error) {
	m := map[string]int{}
	for _, p := range splitList(s) {
		kv := strings.SplitN(p, "=", 2)
		if len(kv) != 2 {
			return nil, fmt.Errorf("-method-delay: want Method=ms, got %q", p)
		}
		ms, err := strconv.Atoi(kv[1])
		if err != nil || ms < 0 {
			return nil, fmt.Errorf("-method-delay: bad milliseconds in %q", p)
		}
		m[strings.TrimSpace(kv[0])] = ms
	}
	return m, nil
}

// ensureFolder returns the folder at rel (a/b/c) under base, creating the
// missing parts.
func ensureFolder(ctx context.Context, si *object.SearchIndex, base *object.Folder, rel string) (*object.Folder, error) {
	f := base
	for _, name := range strings.Split(rel, "/") {
		if name == "" {
			continue
		}
		ref, err := si.FindChild(ctx, f, name)
		if err != nil {
			return nil, err
		}
		if ref != nil {
			child, ok := ref.(*object.Folder)
			if !ok {
				return nil, fmt.Errorf("%s/%s exists and is not a folder", rel, name)
			}
			f = child
			continue
		}
		if f, err = f.CreateFolder(ctx, name); err != nil {
			return nil, fmt.Errorf("create folder %s: %v", name, err)
		}
	}
	return f, nil
}

type inventory struct {
	vmFolder *object.Folder
	pool     *object.ResourcePool
	ds       *object.Datastore
	si       *object.SearchIndex
}

// locate picks where templates go: the datacenter's vm folder, the first
// cluster's root pool (a standalone host's if there is no cluster) and the
// first datastore.
func locate(ctx context.Context, c *govmomi.Client, dcName string) (*inventory, error) {
	finder := find.NewFinder(c.Client, false)
	var dc *object.Datacenter
	var err error
	if dcName == "" {
		dcs, lerr := finder.DatacenterList(ctx, "*")
		if lerr != nil || len(dcs) == 0 {
			return nil, fmt.Errorf("no datacenter: %v", lerr)
		}
		dc = dcs[0]
	} else if dc, err = finder.Datacenter(ctx, dcName); err != nil {
		return nil, err
	}
	finder.SetDatacenter(dc)

	folders, err := dc.Folders(ctx)
	if err != nil {
		return nil, err
	}
	inv := &inventory{vmFolder: folders.VmFolder, si: object.NewSearchIndex(c.Client)}

	if clusters, _ := finder.ClusterComputeResourceList(ctx, "*"); len(clusters) > 0 {
		inv.pool, err = clusters[0].ResourcePool(ctx)
	} else if hosts, _ := finder.HostSystemList(ctx, "*"); len(hosts) > 0 {
		inv.pool, err = hosts[0].ResourcePool(ctx)
	} else {
		err = fmt.Errorf("datacenter %s has no cluster or host", dc.Name())
	}
	if err != nil {
		return nil, err
	}

	dss, err := finder.DatastoreList(ctx, "*")
	if err != nil || len(dss) == 0 {
		return nil, fmt.Errorf("datacenter %s has no datastore (-ds 0?): %v", dc.Name(), err)
	}
	inv.ds = dss[0]
	return inv, nil
}

// createTemplate makes a small VM (disk + NIC on "VM Network", so clones get
// a guest.net entry) at rel under the vm folder and returns its reference.
func createTemplate(ctx context.Context, inv *inventory, rel string, mark bool) (types.ManagedObjectReference, error) {
	var none types.ManagedObjectReference
	dir, name := path.Split(rel)
	folder, err := ensureFolder(ctx, inv.si, inv.vmFolder, dir)
	if err != nil {
		return none, err
	}

	dsPath := fmt.Sprintf("[%s]", inv.ds.Name())
	config := types.VirtualMachineConfigSpec{
		Name:     name,
		GuestId:  string(types.VirtualMachineGuestOsIdentifierOtherLinux64Guest),
		NumCPUs:  1,
		MemoryMB: 512,
		Files:    &types.VirtualMachineFileInfo{VmPathName: dsPath},
	}
	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		return none, err
	}
	disk := devices.CreateDisk(scsi.(types.BaseVirtualController), inv.ds.Reference(),
		dsPath+" "+path.Join(name, "disk1.vmdk"))
	disk.CapacityInKB = 1024
	nic := esx.EthernetCard // value copy of the simulator's default "VM Network" e1000
	devices = append(devices, scsi, disk, &nic)
	if config.DeviceChange, err = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd); err != nil {
		return none, err
	}

	task, err := folder.CreateVM(ctx, config, inv.pool, nil)
	if err != nil {
		return none, err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return none, fmt.Errorf("create template %s: %v", rel, err)
	}
	ref := info.Result.(types.ManagedObjectReference)
	if mark {
		if err := object.NewVirtualMachine(inv.si.Client(), ref).MarkAsTemplate(ctx); err != nil {
			return none, fmt.Errorf("mark %s as template: %v", rel, err)
		}
	}
	return ref, nil
}

func serveControl(l net.Listener, ctl *control) {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ctl.state())
	}
	intParam := func(w http.ResponseWriter, r *http.Request, name string, max int) (int, bool) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return 0, false
		}
		n, err := strconv.Atoi(r.URL.Query().Get(name))
		if err != nil || n < 0 || (max > 0 && n > max) {
			http.Error(w, fmt.Sprintf("want ?%s=N (0..%d)", name, max), http.StatusBadRequest)
			return 0, false
		}
		return n, true
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/state", func(w http.ResponseWriter, r *http.Request) { reply(w) })
	mux.HandleFunc("/clone-fail", func(w http.ResponseWriter, r *http.Request) {
		if n, ok := intParam(w, r, "percent", 100); ok {
			ctl.mu.Lock()
			ctl.failPercent = n
			ctl.mu.Unlock()
			reply(w)
		}
	})
	mux.HandleFunc("/clone-clash", func(w http.ResponseWriter, r *http.Request) {
		if n, ok := intParam(w, r, "count", 0); ok {
			ctl.mu.Lock()
			ctl.clashes = n
			ctl.mu.Unlock()
			reply(w)
		}
	})
	mux.HandleFunc("/clone-delay", func(w http.ResponseWriter, r *http.Request) {
		if n, ok := intParam(w, r, "ms", 0); ok {
			ctl.mu.Lock()
			ctl.delay = time.Duration(n) * time.Millisecond
			ctl.mu.Unlock()
			reply(w)
		}
	})
	logger.Printf("control endpoint: %v", http.Serve(l, mux))
}

// logger is for this program's own few lines; the simulator logs every
// property collector round through the standard logger, which -verbose keeps.
var logger = log.New(os.Stderr, "vcsim: ", log.Ltime|log.Lmicroseconds)

func main() {
	model := simulator.VPX()
	model.Machine = 0 // vmpooler's tests clone templates; model VMs only add noise
	model.Host = 0    // standalone hosts likewise

	listen := flag.String("listen", "127.0.0.1:0", "SOAP listen address (port 0 picks a free port)")
	controlAddr := flag.String("control", "127.0.0.1:0", "control HTTP listen address, empty to disable")
	username := flag.String("username", "user", "the only user name accepted")
	password := flag.String("password", "pass", "the only password accepted")
	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "number of datacenters (DC0, DC1, ...)")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "clusters per datacenter (DC0_C0, ...)")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "standalone hosts per datacenter")
	flag.IntVar(&model.Pool, "pool", model.Pool, "child resource pools per cluster")
	flag.IntVar(&model.Machine, "vm", model.Machine, "model VMs per resource pool (powered on)")
	flag.IntVar(&model.Datastore, "ds", model.Datastore, "datastores (LocalDS_0, ...), shared by all hosts")
	flag.IntVar(&model.Portgroup, "pg", model.Portgroup, "distributed port groups per datacenter")
	flag.IntVar(&model.Folder, "folder", model.Folder, "datacenters placed inside a folder (F0, ...)")
	dcName := flag.String("datacenter", "", "datacenter for -template and -folders (default: the first)")
	templates := flag.String("template", "templates/centos-6-x86_64",
		"comma list of template paths relative to the datacenter's vm folder; folders are created")
	markTemplate := flag.Bool("mark-template", true,
		"mark -template VMs as templates (then CloneVM_Task needs spec.location.pool, as on vSphere)")
	pools := flag.String("folders", "", "comma list of folders to create under the vm folder, e.g. vmpooler/pool1")
	cloneDelay := flag.Duration("clone-delay", 0, "time a CloneVM_Task of a -template runs before it completes")
	failPercent := flag.Int("clone-fail-percent", 0, "percent (0..100) of template clones whose task fails")
	seed := flag.Int64("seed", 0, "random seed for failure injection (0: time based)")
	methodDelay := flag.String("method-delay", "",
		"comma list Method=ms for simulator.DelayConfig.MethodDelay: delays answering the SOAP call itself")
	stdinEOF := flag.Bool("exit-on-stdin-eof", false, "exit when stdin closes (so a crashed parent leaves no server behind)")
	verbose := flag.Bool("verbose", false, "keep the simulator's own (chatty) log on stderr")
	trace := flag.Bool("trace", false, "write SOAP traffic to stderr")
	flag.Parse()

	if *failPercent < 0 || *failPercent > 100 {
		logger.Fatalf("-clone-fail-percent must be 0..100")
	}
	md, err := parseMethodDelay(*methodDelay)
	if err != nil {
		logger.Fatal(err)
	}
	if !*verbose {
		log.SetOutput(io.Discard)
	}

	// The simulator keeps datastores (and the VM files on them) in temporary
	// directories. Pointing TMPDIR at a private directory lets one RemoveAll
	// clean up: Model.Remove would do it too, but it walks the registry
	// without a lock, which can crash when requests are still running.
	tmp, err := os.MkdirTemp("", "vcsim-")
	if err != nil {
		logger.Fatal(err)
	}
	_ = os.Setenv("TMPDIR", tmp)
	// A parent that closes our stdout or stderr pipe would otherwise kill us
	// with SIGPIPE on the next write, leaving that directory behind.
	signal.Ignore(syscall.SIGPIPE)
	fatal := func(format string, args ...interface{}) {
		logger.Printf(format, args...)
		_ = os.RemoveAll(tmp)
		os.Exit(1)
	}
	if *seed == 0 {
		*seed = time.Now().UnixNano()
	}
	ctl := &control{delay: *cloneDelay, failPercent: *failPercent, rnd: rand.New(rand.NewSource(*seed)),
		calls: map[string]int{}}
	simulator.Trace = *trace

	// DelayConfig sleeps in the SOAP dispatcher before the method runs, while
	// the stock clone completes inside the call: a MethodDelay on
	// CloneVM_Task therefore slows the call's answer, not a running task.
	// Model.Create copies it into the service only after building the
	// inventory, so it never slows startup. It is fixed at startup because
	// the dispatcher reads the map without a lock.
	model.DelayConfig.MethodDelay = md

	if err := model.Create(); err != nil {
		fatal("create model: %v", err)
	}

	root := &propertyCollector{}
	root.Self = model.ServiceContent.PropertyCollector
	simulator.Map.Put(root)

	model.Service.TLS = new(tls.Config) // https with the simulator's built-in localhost cert
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}
	server := model.Service.NewServer()
	// Before any client connects (our own below is the first): net/http reads
	// the handler at each request.
	server.Config.Handler = ctl.counting(server.Config.Handler)

	ctx := context.Background()
	client, err := govmomi.NewClient(ctx, server.URL, true)
	if err != nil {
		fatal("connect to own server: %v", err)
	}
	if err := setup(ctx, client, ctl, *dcName, splitList(*templates), splitList(*pools), *markTemplate); err != nil {
		fatal("%v", err)
	}
	_ = client.Logout(ctx)

	out := bufio.NewWriter(os.Stdout)
	if *controlAddr != "" {
		l, err := net.Listen("tcp", *controlAddr)
		if err != nil {
			fatal("control listener: %v", err)
		}
		go serveControl(l, ctl)
		fmt.Fprintf(out, "VCSIM_CONTROL=http://%s\n", l.Addr())
	}
	fmt.Fprintf(out, "VCSIM_URL=%s\n", server.URL)
	if err := out.Flush(); err != nil {
		fatal("stdout: %v", err)
	}

	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if *stdinEOF {
		// Only for a parent that gives us a pipe: /dev/null ends at once.
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
	}
	sig := <-stop
	// No server.Close(): it waits for in-flight requests, and clients may be
	// parked in a long-polling WaitForUpdates.
	_ = os.RemoveAll(tmp)
	logger.Printf("%v: exiting", sig)
}

// setup creates the -folders and -template VMs and swaps each template's
// registry entry for the cloning wrapper.
func setup(ctx context.Context, c *govmomi.Client, ctl *control, dcName string, templates, pools []string, mark bool) error {
	if len(templates) == 0 && len(pools) == 0 {
		return nil
	}
	inv, err := locate(ctx, c, dcName)
	if err != nil {
		return err
	}
	for _, p := range pools {
		if _, err := ensureFolder(ctx, inv.si, inv.vmFolder, p); err != nil {
			return fmt.Errorf("folder %s: %v", p, err)
		}
	}
	for _, t := range templates {
		ref, err := createTemplate(ctx, inv, t, mark)
		if err != nil {
			return err
		}
		vm := simulator.Map.Get(ref).(*simulator.VirtualMachine)
		simulator.Map.Put(&templateVM{VirtualMachine: *vm, ctl: ctl})
		logger.Printf("template %s (%s) on %s, pool %s", t, ref.Value, inv.ds.Name(), inv.pool.Reference().Value)
	}
	return nil
}
