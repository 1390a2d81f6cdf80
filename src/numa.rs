//! NUMA placement: which nodes the pool's memory comes from ([`NumaPolicy`], applied with `mbind` to every fresh
//! chunk and overflow mapping before its first touch), and, under [`NumaPolicy::NodeLocal`] on a machine with
//! several nodes, node-aware hand-out: one shared freelist per node ([`NodeFree`]), so a thread gets buffers
//! from its own node when it can.
//!
//! The node a thread runs on comes from a [`Topology`]: `getcpu` in normal use, or one injected by tests
//! ([`PoolBuilder::numa_test_topology`](crate::PoolBuilder::numa_test_topology)).

use crate::config::{Layout, PoolBuilder};
use crate::error::ConfigError;
use crate::freelist::FreeList;
use crate::sys::numa::{self as sys_numa, Mode, MAX_NODES};
use std::io;
use std::ptr::NonNull;
// Plain std atomics: a chunk's node is written by the thread that maps the chunk before any of its slots is
// published (freelist push, or handed out), and read only by threads that got a slot of it through that
// publication, so the freelist's own synchronisation orders the two; not part of any protocol the loom models
// check.
use std::sync::atomic::AtomicU16;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Where the pool's memory (pooled chunks and overflow buffers) is placed on a NUMA machine. See
/// [`PoolBuilder::numa`](crate::PoolBuilder::numa).
///
/// Every policy but [`Local`](Self::Local) is applied with `mbind(2)` to each fresh mapping before any of its
/// pages is touched (so `prealloc`, locking and huge pages all allocate under it), and stays with the mapping
/// for its life: pages given back by trimming come back under the same policy. Linux only: elsewhere `build`
/// returns [`ConfigError::Unsupported`] for any policy but `Local`. Node ids must be online
/// (`/sys/devices/system/node/online`), else `build` returns [`ConfigError::NumaNodeOffline`]
/// ([`ConfigError::NumaNodeTooLarge`] at or above 1024, [`ConfigError::NumaEmptyNodeSet`] for an empty set).
///
/// # Examples
/// ```
/// use pagepool::{NumaPolicy, PagePool};
/// // Node 0 exists on every Linux machine.
/// let policy = NumaPolicy::Bind(vec![0]);
/// match PagePool::builder().capacity(8).numa(policy).build() {
///     Ok(pool) => assert_eq!(pool.acquire().unwrap().len(), pagepool::page_size()),
///     // Not Linux: only the default policy is available.
///     Err(e) => assert!(matches!(e, pagepool::ConfigError::Unsupported { .. }), "{e}"),
/// }
/// // An empty node set is refused at build, on every platform.
/// let empty = PagePool::builder().numa(NumaPolicy::Interleave(vec![])).build();
/// assert!(empty.is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NumaPolicy {
    /// No `mbind`: the process's policy applies, by default the node of the thread that first touches each
    /// page (the default).
    #[default]
    Local,
    /// Allocate on this node while it has free memory, else elsewhere (`MPOL_PREFERRED`).
    Preferred(usize),
    /// Allocate only on these nodes (`MPOL_BIND`): when they are out of memory, page faults fail (the process
    /// is killed by the OOM killer), as for any bound memory. With `lock_memory` or `prealloc` the pages are
    /// allocated at map time instead.
    Bind(Vec<usize>),
    /// Spread the pages round-robin over these nodes (`MPOL_INTERLEAVE`): even bandwidth across nodes for
    /// memory every thread uses.
    Interleave(Vec<usize>),
    /// Each chunk is placed on the node of the thread that maps it (`MPOL_PREFERRED` to that node; overflow
    /// buffers on the node of the thread that maps them), and on a machine with several nodes the shared pool
    /// keeps one freelist per node: a thread that refills from it gets buffers of its own node first and
    /// another node's only when its own has none idle (then before mapping a new chunk). Thread caches and the
    /// depot's magazines are not sorted by node: a buffer released on another node's thread may serve that
    /// thread next. The per-node freelists cost the freelist's bookkeeping (16 bytes per buffer) once per
    /// node. With [`prealloc`](crate::PoolBuilder::prealloc) every chunk is mapped by the building thread, so
    /// all land on its node. On one node this is `Preferred(0)` with the single freelist of the other policies.
    NodeLocal,
}

impl NumaPolicy {
    /// The setting as written on the builder, for errors and events.
    fn name(&self) -> &'static str {
        match self {
            NumaPolicy::Local => "Local",
            NumaPolicy::Preferred(_) => "Preferred(..)",
            NumaPolicy::Bind(_) => "Bind(..)",
            NumaPolicy::Interleave(_) => "Interleave(..)",
            NumaPolicy::NodeLocal => "NodeLocal",
        }
    }
}

/// Checks `policy`'s node set: non-empty, every node below [`MAX_NODES`] and online (when the online set is
/// known: `online` returns `None` where sysfs cannot be read, and then the kernel judges at map time).
pub(crate) fn validate(
    policy: &NumaPolicy,
    online: impl FnOnce() -> Option<Vec<usize>>,
) -> Result<(), ConfigError> {
    let nodes: &[usize] = match policy {
        NumaPolicy::Local | NumaPolicy::NodeLocal => return Ok(()),
        NumaPolicy::Preferred(n) => std::slice::from_ref(n),
        NumaPolicy::Bind(v) | NumaPolicy::Interleave(v) => v,
    };
    if nodes.is_empty() {
        return Err(ConfigError::NumaEmptyNodeSet {
            setting: policy.name(),
        });
    }
    if let Some(&node) = nodes.iter().find(|&&n| n >= MAX_NODES) {
        return Err(ConfigError::NumaNodeTooLarge {
            node,
            max: MAX_NODES,
        });
    }
    if let Some(online) = online() {
        if let Some(&node) = nodes.iter().find(|n| !online.contains(n)) {
            return Err(ConfigError::NumaNodeOffline { node, online });
        }
    }
    Ok(())
}

/// Where the calling thread runs: the seam between node-aware hand-out and `getcpu`.
pub(crate) trait Topology: Send + Sync + std::fmt::Debug {
    /// Node ids are below this.
    fn nodes(&self) -> usize;
    /// The node the calling thread runs on now (below [`nodes`](Self::nodes)).
    fn current_node(&self) -> usize;
    /// The node whose memory backs what is placed on `node` (itself, but for an injected topology, whose
    /// nodes need not exist: their memory goes to node 0).
    fn memory_node(&self, node: usize) -> usize {
        node
    }
}

/// The machine's topology: the online nodes from sysfs; the current node from `getcpu`: the CPU from the vDSO
/// (`sched_getcpu`) looked up in the CPU -> node table read from sysfs at build, else the `getcpu` system
/// call.
#[derive(Debug)]
struct SysTopology {
    nodes: usize,
    cpu_node: Box<[u16]>,
}

impl SysTopology {
    fn new() -> Self {
        SysTopology {
            nodes: sys_numa::online_nodes()
                .and_then(|v| v.last().map(|&n| n + 1))
                .unwrap_or(1),
            cpu_node: sys_numa::cpu_nodes().unwrap_or_default().into(),
        }
    }
}

impl Topology for SysTopology {
    fn nodes(&self) -> usize {
        self.nodes
    }
    fn current_node(&self) -> usize {
        let node = match sys_numa::current_cpu().and_then(|c| self.cpu_node.get(c)) {
            Some(&n) => usize::from(n),
            None => sys_numa::current_node(),
        };
        node.min(self.nodes - 1)
    }
}

/// A topology injected by tests: `nodes` nodes, the current one given by a function (typically reading a
/// thread-local the test sets).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TestTopology {
    pub(crate) nodes: usize,
    pub(crate) current: fn() -> usize,
}

impl Topology for TestTopology {
    fn nodes(&self) -> usize {
        self.nodes
    }
    fn current_node(&self) -> usize {
        (self.current)().min(self.nodes - 1)
    }
    fn memory_node(&self, _node: usize) -> usize {
        0
    }
}

/// Node-aware state of a `NodeLocal` pool: the topology and each chunk's node.
#[derive(Debug)]
struct NodeMap {
    topo: Box<dyn Topology>,
    /// Node of each chunk, written when the chunk is mapped.
    chunk_node: Box<[AtomicU16]>,
    /// log2 of the slots per chunk (slot -> chunk).
    chunk_shift: u32,
}

#[derive(Debug, Clone)]
enum Kind {
    Local,
    Fixed {
        mode: Mode,
        nodes: Arc<[usize]>,
        name: &'static str,
    },
    NodeLocal(Arc<NodeMap>),
}

/// The resolved placement of one pool (one size class): what [`apply`](Self::apply) does to each fresh mapping,
/// shared with the pool's [`NodeFree`].
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    kind: Kind,
}

impl Placement {
    /// Resolves the builder's (validated) policy for a pool of layout `l`.
    pub(crate) fn new(b: &PoolBuilder, l: &Layout) -> Self {
        let fixed = |mode, nodes: &[usize], name| Kind::Fixed {
            mode,
            nodes: nodes.into(),
            name,
        };
        let kind = match &b.numa {
            NumaPolicy::Local => Kind::Local,
            NumaPolicy::Preferred(n) => {
                fixed(Mode::Preferred, std::slice::from_ref(n), "Preferred")
            }
            NumaPolicy::Bind(v) => fixed(Mode::Bind, v, "Bind"),
            NumaPolicy::Interleave(v) => fixed(Mode::Interleave, v, "Interleave"),
            NumaPolicy::NodeLocal => {
                let topo: Box<dyn Topology> = match b.numa_topology {
                    Some(t) => Box::new(TestTopology {
                        nodes: t.nodes.clamp(1, MAX_NODES),
                        current: t.current,
                    }),
                    None => Box::new(SysTopology::new()),
                };
                Kind::NodeLocal(Arc::new(NodeMap {
                    topo,
                    chunk_node: (0..l.chunks).map(|_| AtomicU16::new(0)).collect(),
                    chunk_shift: l.chunk_shift,
                }))
            }
        };
        match &kind {
            Kind::Local => {}
            Kind::Fixed { mode, nodes, .. } => {
                tracing::debug!(target: "pagepool", ?mode, ?nodes, "NUMA placement: mbind of every mapping")
            }
            Kind::NodeLocal(map) => tracing::debug!(
                target: "pagepool",
                nodes = map.topo.nodes(),
                "NUMA placement: chunks on their mapping thread's node, one freelist per node"
            ),
        }
        Placement { kind }
    }

    /// Whether fresh mappings get an `mbind` (so they must not be populated before it).
    pub(crate) fn binds(&self) -> bool {
        !matches!(self.kind, Kind::Local)
    }

    /// Sets the memory policy of a fresh, untouched mapping `[start, start + len)`: chunk number `chunk`, or
    /// an overflow buffer (`None`). Under `NodeLocal` the chunk's node is recorded for [`NodeFree::push`].
    /// Errors carry `mbind`'s errno kind and say what was asked.
    pub(crate) fn apply(
        &self,
        start: NonNull<u8>,
        len: usize,
        chunk: Option<usize>,
    ) -> io::Result<()> {
        let (mode, nodes, name): (Mode, &[usize], &str) = match &self.kind {
            Kind::Local => return Ok(()),
            Kind::Fixed { mode, nodes, name } => (*mode, nodes, name),
            Kind::NodeLocal(map) => {
                let node = map.topo.current_node();
                if let Some(k) = chunk {
                    // Relaxed: see the `AtomicU16` import.
                    map.chunk_node[k].store(node as u16, Relaxed);
                }
                let on = map.topo.memory_node(node);
                return sys_numa::mbind(start, len, Mode::Preferred, &[on])
                    .map_err(|e| mbind_error(e, "NodeLocal", &[on], len));
            }
        };
        sys_numa::mbind(start, len, mode, nodes).map_err(|e| mbind_error(e, name, nodes, len))
    }
}

fn mbind_error(e: io::Error, name: &str, nodes: &[usize], len: usize) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("mbind({name} {nodes:?}) of a fresh {len}-byte mapping failed: {e}"),
    )
}

/// The shared freelist of a pool: one [`FreeList`] normally; under [`NumaPolicy::NodeLocal`] on several nodes,
/// one per node. Same call shape as `FreeList`: [`push`](Self::push) routes a slot to its chunk's node's list,
/// [`pop`](Self::pop) takes from the calling thread's node first, then the others.
pub(crate) struct NodeFree {
    /// The list of node 0 (the only list on one node).
    first: FreeList,
    /// The lists of nodes 1.. (empty unless node-aware on several nodes).
    others: Box<[FreeList]>,
    /// The chunk -> node table and the topology (set when `others` is non-empty).
    map: Option<Arc<NodeMap>>,
}

impl NodeFree {
    /// Lists for the pool of `layout` placed by `placement`. Building allocates nothing per slot: each list
    /// gets its links chunk by chunk ([`add_chunk`](Self::add_chunk)).
    pub(crate) fn new(layout: &Layout, placement: &Placement) -> Self {
        let map = match &placement.kind {
            Kind::NodeLocal(map) if map.topo.nodes() > 1 => Some(Arc::clone(map)),
            _ => None,
        };
        let extra = map.as_ref().map_or(0, |m| m.topo.nodes() - 1);
        let first = FreeList::new(layout);
        let others = (0..extra).map(|_| FreeList::new(layout)).collect();
        NodeFree { first, others, map }
    }

    /// Allocates chunk `k`'s links in every list (`FreeList::add_chunk`): each list can hold any of its slots.
    pub(crate) fn add_chunk(&self, k: usize) -> io::Result<()> {
        self.first.add_chunk(k)?;
        self.others.iter().try_for_each(|l| l.add_chunk(k))
    }

    /// The list whose links the depot's magazines are chained through (node 0's). A slot is in one place at a
    /// time, so a list and the depot never use its link cell at once; each list links its own slots through
    /// its own cells.
    #[inline]
    pub(crate) fn links(&self) -> &FreeList {
        &self.first
    }

    /// The list of `slot`'s chunk's node.
    #[inline]
    fn home(&self, slot: u32) -> &FreeList {
        match &self.map {
            None => &self.first,
            Some(map) => {
                // Relaxed: see the `AtomicU16` import.
                let node = map.chunk_node[(slot as usize) >> map.chunk_shift].load(Relaxed);
                self.list(usize::from(node).min(self.others.len()))
            }
        }
    }

    /// Puts a fresh chunk's slots (`FreeList::push_fresh`) on their node's list.
    pub(crate) fn push_fresh(&self, range: std::ops::Range<u32>) {
        if !range.is_empty() {
            self.home(range.start).push_fresh(range);
        }
    }

    /// Returns a trimmed slot (`FreeList::push_cold`) to its node's list.
    pub(crate) fn push_cold(&self, slot: u32) {
        self.home(slot).push_cold(slot);
    }

    #[inline]
    fn list(&self, node: usize) -> &FreeList {
        match node {
            0 => &self.first,
            n => &self.others[n - 1],
        }
    }

    /// Takes an idle slot, if any: on several nodes, the calling thread's node's first.
    #[inline]
    pub(crate) fn pop(&self) -> Option<u32> {
        match self.map {
            None => self.first.pop(),
            Some(_) => self.pop_nodes(),
        }
    }

    #[cold]
    fn pop_nodes(&self) -> Option<u32> {
        let map = self.map.as_ref()?;
        let nodes = self.others.len() + 1;
        let own = map.topo.current_node();
        (0..nodes).find_map(|i| self.list((own + i) % nodes).pop())
    }

    /// Returns a slot to its chunk's node's list.
    #[inline]
    pub(crate) fn push(&self, slot: u32) {
        self.home(slot).push(slot);
    }

    /// Whether slots are sorted by node (`NodeLocal` on several nodes). The pool then runs without a depot:
    /// its magazines would mix nodes, and a refill from them would hand a thread another node's buffers while
    /// its own node's list has some.
    pub(crate) fn by_node(&self) -> bool {
        self.map.is_some()
    }

    /// Slots in all lists now (exact when no other thread is pushing or popping).
    pub(crate) fn len(&self) -> usize {
        self.first.len() + self.others.iter().map(FreeList::len).sum::<usize>()
    }
}

impl std::fmt::Debug for NodeFree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeFree")
            .field("nodes", &(self.others.len() + 1))
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(all(test, not(loom), target_os = "linux"))]
mod tests {
    use super::*;
    use crate::{AcquireError, HugePages, PagePool};

    fn page() -> usize {
        crate::page_size()
    }

    /// The policy field of `/proc/self/numa_maps` for the mapping (VMA) that holds `addr` (the line with the
    /// greatest start at or below it: one read, so mappings other tests make meanwhile cannot mislead), and
    /// the VMA's pages on node 0 (`N0=`), if any.
    fn numa_maps_policy(addr: *const u8) -> (String, usize) {
        let addr = addr as usize;
        let numa = std::fs::read_to_string("/proc/self/numa_maps").unwrap();
        let line = numa
            .lines()
            .filter_map(|l| Some((usize::from_str_radix(l.split(' ').next()?, 16).ok()?, l)))
            .filter(|&(start, _)| start <= addr)
            .max_by_key(|&(start, _)| start)
            .expect("address not in numa_maps")
            .1;
        let mut fields = line.split(' ').skip(1);
        let policy = fields.next().unwrap().to_string();
        let n0 = fields
            .find_map(|f| f.strip_prefix("N0="))
            .map_or(0, |n| n.parse().unwrap());
        (policy, n0)
    }

    /// What this kernel prints for each policy on node 0 (checked on 6.18: `bind:0`, `interleave:0`,
    /// `prefer:0`; `default` without a policy).
    fn expected(p: &NumaPolicy) -> &'static str {
        match p {
            NumaPolicy::Local => "default",
            NumaPolicy::Preferred(_) | NumaPolicy::NodeLocal => "prefer:0",
            NumaPolicy::Bind(_) => "bind:0",
            NumaPolicy::Interleave(_) => "interleave:0",
        }
    }

    fn policies() -> Vec<NumaPolicy> {
        vec![
            NumaPolicy::Local,
            NumaPolicy::Preferred(0),
            NumaPolicy::Bind(vec![0]),
            NumaPolicy::Interleave(vec![0]),
            NumaPolicy::NodeLocal,
        ]
    }

    /// A pool of one chunk (`capacity` buffers) without thread caches, so the next acquire overflows.
    fn pool(p: &NumaPolicy, capacity: usize) -> crate::PoolBuilder {
        PagePool::builder()
            .buf_size(page())
            .capacity(capacity)
            .thread_cache(0)
            .numa(p.clone())
    }

    #[test]
    fn chunks_and_overflow_buffers_carry_the_policy() {
        for p in policies() {
            let pool = pool(&p, 4).build().unwrap();
            let held: Vec<_> = (0..5).map(|_| pool.acquire().unwrap()).collect();
            assert_eq!(pool.stats().overflow_maps, 1, "{p:?}");
            for b in &held {
                assert_eq!(numa_maps_policy(b.as_ptr()).0, expected(&p), "{p:?}");
            }
        }
    }

    #[test]
    fn prealloc_allocates_under_the_policy() {
        for p in policies() {
            let pool = pool(&p, 64).prealloc(true).build().unwrap();
            let b = pool.acquire().unwrap();
            let (policy, n0) = numa_maps_policy(b.as_ptr());
            assert_eq!(policy, expected(&p), "{p:?}");
            // Every page faulted in at build (after the mbind, so on the policy's node).
            assert!(n0 >= 64, "{p:?}: {n0} pages on node 0");
        }
    }

    #[test]
    fn transparent_huge_pages_keep_the_policy() {
        for p in policies() {
            let pool = pool(&p, 1024)
                .huge_pages(HugePages::Transparent)
                .prealloc(true)
                .build()
                .unwrap();
            let b = pool.acquire().unwrap();
            assert_eq!(numa_maps_policy(b.as_ptr()).0, expected(&p), "{p:?}");
        }
    }

    #[test]
    fn overflow_reserve_reuses_buffers_with_the_policy() {
        for p in policies() {
            let pool = pool(&p, 1)
                .overflow_decay(std::time::Duration::from_secs(3600))
                .build()
                .unwrap();
            let _pooled = pool.acquire().unwrap();
            let first = pool.acquire().unwrap();
            let at = first.as_ptr();
            drop(first);
            let again = pool.acquire().unwrap();
            assert_eq!(pool.stats().overflow_reuses, 1, "{p:?}");
            assert_eq!(again.as_ptr(), at);
            assert_eq!(numa_maps_policy(again.as_ptr()).0, expected(&p), "{p:?}");
        }
    }

    #[test]
    fn trimmed_memory_comes_back_under_the_policy() {
        for p in policies() {
            let pool = pool(&p, 8).build().unwrap();
            let mut b = pool.acquire().unwrap();
            b.fill(1);
            drop(b);
            assert!(pool.trim() > 0, "{p:?}");
            let mut b = pool.acquire().unwrap();
            assert!(
                b.iter().all(|&x| x == 0),
                "{p:?}: trimmed pages read back as zeros"
            );
            b.fill(2);
            let (policy, n0) = numa_maps_policy(b.as_ptr());
            assert_eq!(policy, expected(&p), "{p:?}");
            assert!(n0 >= 1, "{p:?}");
        }
    }

    #[test]
    fn guard_pages_and_locking_are_applied_after_the_policy() {
        let pool = pool(&NumaPolicy::Bind(vec![0]), 4)
            .guard_pages(true)
            .lock_memory(crate::LockPolicy::BestEffort)
            .build()
            .unwrap();
        let b = pool.acquire().unwrap();
        assert_eq!(numa_maps_policy(b.as_ptr()).0, "bind:0");
    }

    #[test]
    fn invalid_node_sets_are_typed_errors() {
        let build = |p: NumaPolicy| PagePool::builder().numa(p).build().map(drop);
        assert!(matches!(
            build(NumaPolicy::Bind(vec![])),
            Err(ConfigError::NumaEmptyNodeSet {
                setting: "Bind(..)"
            })
        ));
        assert!(matches!(
            build(NumaPolicy::Interleave(vec![])),
            Err(ConfigError::NumaEmptyNodeSet {
                setting: "Interleave(..)"
            })
        ));
        assert!(matches!(
            build(NumaPolicy::Preferred(MAX_NODES)),
            Err(ConfigError::NumaNodeTooLarge {
                node: MAX_NODES,
                max: MAX_NODES
            })
        ));
        assert!(matches!(
            build(NumaPolicy::Bind(vec![0, usize::MAX])),
            Err(ConfigError::NumaNodeTooLarge {
                node: usize::MAX,
                ..
            })
        ));
        let online = sys_numa::online_nodes().unwrap();
        let offline = online.last().unwrap() + 1;
        match build(NumaPolicy::Interleave(vec![0, offline])) {
            Err(ConfigError::NumaNodeOffline { node, online: o }) => {
                assert_eq!(node, offline);
                assert_eq!(o, online);
            }
            other => panic!("{other:?}"),
        }
        // Size classes validate each class the same way.
        assert!(matches!(
            PagePool::builder()
                .size_classes(&[page(), 2 * page()])
                .numa(NumaPolicy::Bind(vec![offline]))
                .build()
                .map(drop),
            Err(ConfigError::NumaNodeOffline { .. })
        ));
    }

    #[test]
    fn validation_against_a_given_online_set() {
        let online = || Some(vec![0, 1, 3]);
        assert!(validate(&NumaPolicy::Bind(vec![0, 1, 3]), online).is_ok());
        assert!(matches!(
            validate(&NumaPolicy::Bind(vec![2]), online),
            Err(ConfigError::NumaNodeOffline { node: 2, .. })
        ));
        // Unknown online set: only the static checks.
        assert!(validate(&NumaPolicy::Preferred(7), || None).is_ok());
        assert!(validate(&NumaPolicy::Local, || unreachable!()).is_ok());
    }

    /// A refused `mbind` fails the acquire that maps, with the errno's kind, unmaps the fresh mapping, and the
    /// pool serves afterwards.
    #[test]
    fn mbind_failure_is_an_os_error() {
        use crate::sys::fault;
        const EINVAL: i32 = 22;
        let live = fault::live();
        {
            let pool = pool(&NumaPolicy::Bind(vec![0]), 1).build().unwrap();
            fault::fail_call_at(0, EINVAL);
            match pool.acquire() {
                Err(AcquireError::Os { source, .. }) => {
                    assert_eq!(source.kind(), io::ErrorKind::InvalidInput);
                    assert!(source.to_string().contains("mbind(Bind [0])"), "{source}");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(fault::live(), live, "the chunk was unmapped");
            assert_eq!(pool.stats().os_errors, 1);
            // The overflow path: the next mbind (the pooled chunk's succeeds first, then the overflow's) fails.
            fault::fail_call_at(1, EINVAL);
            let pooled = pool.acquire().unwrap();
            assert!(matches!(pool.acquire(), Err(AcquireError::Os { .. })));
            fault::fail_call_at(u64::MAX, EINVAL);
            let over = pool.acquire().unwrap();
            assert_eq!(numa_maps_policy(over.as_ptr()).0, "bind:0");
            drop((pooled, over));
        }
        fault::fail_call_at(u64::MAX, 0);
    }

    thread_local! {
        static NODE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn on(node: usize) {
        NODE.with(|n| n.set(node));
    }

    fn current() -> usize {
        NODE.with(|n| n.get())
    }

    /// Two injected nodes, two chunks: each chunk lands on the node of the thread that grows it, a released
    /// buffer returns to its chunk's node, and a thread is handed its own node's buffers first, another node's
    /// only once its own has none idle.
    #[test]
    fn node_local_buffers_are_handed_out_first() {
        let per_chunk = (4 << 20) / page();
        let pool = PagePool::builder()
            .buf_size(page())
            .capacity(2 * per_chunk)
            .thread_cache(0)
            .overflow(crate::OverflowPolicy::Fail)
            .numa(NumaPolicy::NodeLocal)
            .numa_test_topology(2, current)
            .build()
            .unwrap();
        assert_eq!(pool.inner().free.others.len(), 1, "one list per node");
        // Node 0 grows chunk 0 and takes all of it; node 1 finds both lists empty, grows chunk 1 and takes it.
        on(0);
        let mut node0: Vec<_> = (0..per_chunk).map(|_| pool.acquire().unwrap()).collect();
        assert_eq!(pool.stats().chunks, 1);
        let chunk0: std::collections::HashSet<usize> =
            node0.iter().map(|b| b.as_ptr() as usize).collect();
        let in0 = |b: &crate::AlignedBuf| chunk0.contains(&(b.as_ptr() as usize));
        on(1);
        let mut node1: Vec<_> = (0..per_chunk).map(|_| pool.acquire().unwrap()).collect();
        assert_eq!(pool.stats().chunks, 2);
        assert!(!node1.iter().any(in0));
        // Five of chunk 1 go back, then ten of chunk 0, all on node 1's thread: each returns to its chunk's
        // node's list (one FIFO would hand chunk 1's out first).
        drop(node1.drain(..5).collect::<Vec<_>>());
        drop(node0.drain(..10).collect::<Vec<_>>());
        assert_eq!(pool.inner().free.first.len(), 10);
        assert_eq!(pool.inner().free.others[0].len(), 5);
        // Node 0 gets all ten of its own first ...
        on(0);
        for _ in 0..10 {
            let b = pool.acquire().unwrap();
            assert!(
                in0(&b),
                "node 1's buffer handed out while node 0 had its own"
            );
            node0.push(b);
        }
        // ... and node 1's only once its own has none.
        let b = pool.acquire().unwrap();
        assert!(!in0(&b));
        node1.push(b);
        // The same from node 1: three of chunk 0 go back; its own four first, then node 0's.
        drop(node0.drain(..3).collect::<Vec<_>>());
        on(1);
        for _ in 0..4 {
            let b = pool.acquire().unwrap();
            assert!(
                !in0(&b),
                "node 0's buffer handed out while node 1 had its own"
            );
            node1.push(b);
        }
        let fallback = pool.acquire().unwrap();
        assert!(in0(&fallback));
        assert_eq!(pool.stats().idle, 2);
        assert!(matches!(pool.acquire(), Ok(b) if in0(&b)));
        // Stats and trimming see every list.
        drop((node0, node1, fallback));
        assert_eq!(pool.stats().idle, 2 * per_chunk);
        assert!(pool.trim() > 0);
        assert_eq!(pool.stats().idle, 2 * per_chunk);
    }

    /// NUMA x reclaim: a thread on node 1 at the limit takes node 0's idle buffers from another thread's cache,
    /// and every slot a reclaim or a trim moves goes back to its own chunk's node's list.
    #[test]
    fn reclaimed_slots_return_to_their_nodes_list() {
        let per_chunk = (4 << 20) / page();
        let pool = PagePool::builder()
            .buf_size(page())
            .capacity(2 * per_chunk)
            .thread_cache(8)
            .overflow(crate::OverflowPolicy::Fail)
            .numa(NumaPolicy::NodeLocal)
            .numa_test_topology(2, current)
            .build()
            .unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let pool = &pool;
            s.spawn(move || {
                on(0);
                let all: Vec<_> = (0..per_chunk).map(|_| pool.acquire().unwrap()).collect();
                drop(all); // some rest in this thread's cache, the rest on node 0's list
                ready_tx.send(()).unwrap();
                done_rx.recv().unwrap(); // blocked: no pool operation until the end
            });
            ready_rx.recv().unwrap();
            assert!(pool.stats().cached > 0);
            on(1);
            // Node 1 takes node 0's idle list (its own is empty), maps chunk 1, then reclaims the other thread's
            // cache: never refused.
            let all: Vec<_> = (0..2 * per_chunk)
                .map(|_| pool.acquire().unwrap())
                .collect();
            assert!(pool.stats().reclaimed > 0, "{:?}", pool.stats());
            drop(all);
            pool.trim();
            // Each chunk's slots are back on their own node's list.
            assert_eq!(pool.inner().free.first.len(), per_chunk);
            assert_eq!(pool.inner().free.others[0].len(), per_chunk);
            done_tx.send(()).unwrap();
        });
        on(0);
    }

    /// Sorted by node, the pool has no depot (its magazines would mix nodes): thread caches refill from, and
    /// flush to, the per-node lists. One node keeps the depot.
    #[test]
    fn node_local_on_several_nodes_runs_without_a_depot() {
        let build = |nodes| {
            PagePool::builder()
                .buf_size(page())
                .capacity(64)
                .thread_cache(8)
                .numa(NumaPolicy::NodeLocal)
                .numa_test_topology(nodes, current)
                .build()
                .unwrap()
        };
        assert!(build(2).inner().depot.is_none());
        assert!(build(1).inner().depot.is_some());
        // Caches still work over the per-node lists: refills, flushes, everything home.
        let pool = build(2);
        on(1);
        let held: Vec<_> = (0..40).map(|_| pool.acquire().unwrap()).collect();
        drop(held);
        pool.trim();
        let s = pool.stats();
        assert_eq!(
            (s.in_use, s.cached, s.idle),
            (0, 0, s.pooled_buffers),
            "{s:?}"
        );
        on(0);
    }

    /// One node (the default topology here, or one injected node) keeps the single list of the other policies.
    #[test]
    fn one_node_keeps_one_list() {
        for b in [
            PagePool::builder().numa(NumaPolicy::NodeLocal),
            PagePool::builder()
                .numa(NumaPolicy::NodeLocal)
                .numa_test_topology(1, current),
            PagePool::builder().numa(NumaPolicy::Interleave(vec![0])),
        ] {
            let pool = b.build().unwrap();
            if sys_numa::online_nodes().is_some_and(|v| v.len() == 1) {
                assert!(pool.inner().free.others.is_empty());
                assert!(pool.inner().free.map.is_none());
            }
            drop(pool.acquire().unwrap());
        }
    }

    #[test]
    fn a_binding_policy_keeps_map_populate_off() {
        let mem = |p: NumaPolicy| {
            let b = PagePool::builder().numa(p);
            let l = b.layout().unwrap();
            crate::policy::MemPolicy::new(&b, Placement::new(&b, &l))
        };
        assert!(!mem(NumaPolicy::Local).advise_before_touch());
        assert!(mem(NumaPolicy::Bind(vec![0])).advise_before_touch());
        assert!(mem(NumaPolicy::NodeLocal).advise_before_touch());
    }
}
