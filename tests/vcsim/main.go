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

	Started   int `json:"clones_started"`
	Succeeded int `json:"clones_succeeded"`
	Failed    int `json:"clones_failed"`
}

// decide fixes the fate of one clone when the call arrives, so a test that
// sets percent=100 and then clones gets a failure even if it changes the
// setting again before the delay has passed.
func (c *control) decide() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Started++
	fail := c.failPercent > 0 && c.rnd.Intn(100) < c.failPercent
	return c.delay, fail
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
	return map[string]interface{}{
		"clone_delay_ms":     c.delay.Milliseconds(),
		"clone_fail_percent": c.failPercent,
		"clones_started":     c.Started,
		"clones_succeeded":   c.Succeeded,
		"clones_failed":      c.Failed,
	}
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
	delay, fail := t.ctl.decide()

	// The request's Context is not touched again by the server once the call
	// returns, but take a copy anyway since the work runs after that.
	cctx := *ctx
	self := t.Self

	task := simulator.CreateTask(self, "cloneVm", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if fail {
			return nil, &types.SystemError{Reason: "vcsim: injected clone failure"}
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
			log.Printf("clone %q of %s failed: %T", req.Name, self.Value, fault)
		}
	}()

	return &methods.CloneVM_TaskBody{
		Res: &types.CloneVM_TaskResponse{Returnval: task.Self},
	}
}

// clone runs the simulator's own clone, then plays the part of vSphere and
// VMware Tools: power on when asked, report hostname, IP and tools status.
func (t *templateVM) clone(ctx *simulator.Context, req *types.CloneVM_Task) (types.AnyType, types.BaseMethodFault) {
	body := t.VirtualMachine.CloneVMTask(ctx, req).(*methods.CloneVM_TaskBody)
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
		msg := fmt.Sprintf("%T", fault)
		if se, ok := fault.(*types.SystemError); ok && se.Reason != "" {
			msg = se.Reason
		}
		lf = types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg}
	}
	setTask(task, []types.PropertyChange{
		{Name: "info.completeTime", Val: time.Now()},
		{Name: "info.state", Val: state},
		{Name: "info.result", Val: res},
		{Name: "info.error", Val: lf},
	})
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
	mux.HandleFunc("/clone-delay", func(w http.ResponseWriter, r *http.Request) {
		if n, ok := intParam(w, r, "ms", 0); ok {
			ctl.mu.Lock()
			ctl.delay = time.Duration(n) * time.Millisecond
			ctl.mu.Unlock()
			reply(w)
		}
	})
	log.Fatal(http.Serve(l, mux))
}

func main() {
	log.SetPrefix("vcsim: ")
	log.SetFlags(log.Ltime | log.Lmicroseconds)

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
	trace := flag.Bool("trace", false, "write SOAP traffic to stderr")
	flag.Parse()

	if *failPercent < 0 || *failPercent > 100 {
		log.Fatalf("-clone-fail-percent must be 0..100")
	}
	md, err := parseMethodDelay(*methodDelay)
	if err != nil {
		log.Fatal(err)
	}
	if *seed == 0 {
		*seed = time.Now().UnixNano()
	}
	ctl := &control{delay: *cloneDelay, failPercent: *failPercent, rnd: rand.New(rand.NewSource(*seed))}
	simulator.Trace = *trace

	// DelayConfig sleeps in the SOAP dispatcher before the method runs, while
	// the stock clone completes inside the call: a MethodDelay on
	// CloneVM_Task therefore slows the call's answer, not a running task.
	// Model.Create copies it into the service only after building the
	// inventory, so it never slows startup. It is fixed at startup because
	// the dispatcher reads the map without a lock.
	model.DelayConfig.MethodDelay = md

	if err := model.Create(); err != nil {
		log.Fatalf("create model: %v", err)
	}
	// Model.Remove deletes the datastores' temp directories; run it on every
	// exit path we control.
	defer model.Remove()

	model.Service.TLS = new(tls.Config) // https with the simulator's built-in localhost cert
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}
	server := model.Service.NewServer()

	ctx := context.Background()
	client, err := govmomi.NewClient(ctx, server.URL, true)
	if err != nil {
		model.Remove()
		log.Fatalf("connect to own server: %v", err)
	}
	if err := setup(ctx, client, ctl, *dcName, splitList(*templates), splitList(*pools), *markTemplate); err != nil {
		model.Remove()
		log.Fatal(err)
	}
	_ = client.Logout(ctx)

	out := bufio.NewWriter(os.Stdout)
	if *controlAddr != "" {
		l, err := net.Listen("tcp", *controlAddr)
		if err != nil {
			model.Remove()
			log.Fatalf("control listener: %v", err)
		}
		go serveControl(l, ctl)
		fmt.Fprintf(out, "VCSIM_CONTROL=http://%s\n", l.Addr())
	}
	fmt.Fprintf(out, "VCSIM_URL=%s\n", server.URL)
	if err := out.Flush(); err != nil {
		model.Remove()
		log.Fatalf("stdout: %v", err)
	}

	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if *stdinEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
	}
	sig := <-stop
	log.Printf("%v: exiting", sig)
	// No server.Close(): it waits for in-flight requests, and clients may be
	// parked in a long-polling WaitForUpdatesEx. The deferred Remove cleans up.
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
		log.Printf("template %s (%s) on %s, pool %s", t, ref.Value, inv.ds.Name(), inv.pool.Reference().Value)
	}
	return nil
}
