/** VMs: the list (filterable; stays quick with a thousand) and the create form. */
import { type FormEvent, useDeferredValue, useMemo, useState } from "react";
import type { Image } from "../../api/types/images.js";
import type { Vm } from "../../api/types/vms.js";
import { api } from "../api/client.js";
import { ErrorNote, messageOf, PageHead, StateBadge } from "../components/feedback.js";
import { mib } from "../format.js";
import { useLive } from "../live.js";
import { Link, navigate } from "../router.js";

/** Sizes offered in the create form; "custom" takes the fields below it. */
const SIZES = [
  { id: "small", label: "Small: 1 vCPU, 256 MiB", vcpus: 1, memoryMiB: 256 },
  { id: "medium", label: "Medium: 2 vCPUs, 1 GiB", vcpus: 2, memoryMiB: 1024 },
  { id: "large", label: "Large: 4 vCPUs, 4 GiB", vcpus: 4, memoryMiB: 4096 },
  { id: "custom", label: "Custom", vcpus: 0, memoryMiB: 0 },
] as const;

/** The VMs page. */
export function VmsPage() {
  const live = useLive(() => api<{ vms: Vm[] }>("GET", "/v1/vms"), ["vm.", "migration.state"]);
  const [filter, setFilter] = useState("");
  const deferred = useDeferredValue(filter.trim().toLowerCase());
  const vms = live.data?.vms;
  const shown = useMemo(() => {
    const all = [...(vms ?? [])].sort((a, b) => a.name.localeCompare(b.name));
    if (!deferred) return all;
    return all.filter(
      (v) =>
        v.name.toLowerCase().includes(deferred) ||
        v.state.includes(deferred) ||
        (v.host ?? "").includes(deferred),
    );
  }, [vms, deferred]);
  return (
    <>
      <PageHead title="VMs" error={live.error} loading={!live.data && !live.error} />
      <CreateVmForm onCreated={live.reload} />
      <section aria-labelledby="vm-list-title">
        <div className="toolbar">
          <h2 id="vm-list-title">All VMs</h2>
          <label htmlFor="vm-filter" className="inline">
            Filter
          </label>
          <input
            id="vm-filter"
            type="search"
            placeholder="name, state or host"
            value={filter}
            onChange={(e) => setFilter(e.target.value)}
          />
          <span className="muted small" aria-live="polite" data-testid="vm-count">
            {shown.length} of {vms?.length ?? 0}
          </span>
        </div>
        <div className="table-wrap">
          <table className="vm-table stack">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">State</th>
                <th scope="col">Host</th>
                <th scope="col">vCPUs</th>
                <th scope="col">Memory</th>
                <th scope="col">Image</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((v) => (
                <tr key={v.id}>
                  <th scope="row">
                    <Link to={`/vms/${encodeURIComponent(v.name)}`}>{v.name}</Link>
                  </th>
                  <td data-label="State">
                    <StateBadge state={v.state} />
                  </td>
                  <td data-label="Host">{v.host ?? "—"}</td>
                  <td data-label="vCPUs">{v.vcpus}</td>
                  <td data-label="Memory">{mib(v.memoryMiB)}</td>
                  <td data-label="Image">{v.image}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
    </>
  );
}

function CreateVmForm({ onCreated }: { onCreated: () => void }) {
  const images = useLive(() => api<{ images: Image[] }>("GET", "/v1/images"), ["image."]);
  const [name, setName] = useState("");
  const [image, setImage] = useState("");
  const [size, setSize] = useState<(typeof SIZES)[number]["id"]>("small");
  const [vcpus, setVcpus] = useState(1);
  const [memoryMiB, setMemoryMiB] = useState(256);
  const [kernelArgs, setKernelArgs] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const chosenImage = image || images.data?.images[0]?.name || "";

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const preset = SIZES.find((s) => s.id === size)!;
    setBusy(true);
    setError(null);
    try {
      const vm = await api<Vm>("POST", "/v1/vms", {
        name: name.trim(),
        image: chosenImage,
        vcpus: size === "custom" ? vcpus : preset.vcpus,
        memoryMiB: size === "custom" ? memoryMiB : preset.memoryMiB,
        ...(kernelArgs.trim() ? { kernelArgs: kernelArgs.trim() } : {}),
      });
      onCreated();
      navigate(`/vms/${encodeURIComponent(vm.name)}`);
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <details className="card create">
      <summary>Create a VM</summary>
      <form onSubmit={submit} className="form-grid" aria-label="Create a VM">
        <label htmlFor="vm-name">Name</label>
        <input
          id="vm-name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          required
          pattern="[a-z0-9][a-z0-9-]{0,62}"
          title="lower-case letters, digits and dashes"
        />
        <label htmlFor="vm-image">Image</label>
        <select id="vm-image" value={chosenImage} onChange={(e) => setImage(e.target.value)} required>
          {(images.data?.images ?? []).map((i) => (
            <option key={i.id} value={i.name}>
              {i.name}
            </option>
          ))}
        </select>
        <label htmlFor="vm-size">Size</label>
        <select id="vm-size" value={size} onChange={(e) => setSize(e.target.value as typeof size)}>
          {SIZES.map((s) => (
            <option key={s.id} value={s.id}>
              {s.label}
            </option>
          ))}
        </select>
        {size === "custom" ? (
          <>
            <label htmlFor="vm-vcpus">vCPUs</label>
            <input
              id="vm-vcpus"
              type="number"
              min={1}
              max={256}
              value={vcpus}
              onChange={(e) => setVcpus(Number(e.target.value))}
            />
            <label htmlFor="vm-memory">Memory (MiB)</label>
            <input
              id="vm-memory"
              type="number"
              min={16}
              max={4194304}
              value={memoryMiB}
              onChange={(e) => setMemoryMiB(Number(e.target.value))}
            />
          </>
        ) : null}
        <label htmlFor="vm-kargs">Kernel arguments (optional)</label>
        <input id="vm-kargs" value={kernelArgs} onChange={(e) => setKernelArgs(e.target.value)} />
        <div className="form-actions">
          <button type="submit" className="btn primary" disabled={busy || !chosenImage}>
            Create
          </button>
        </div>
      </form>
      {images.data && images.data.images.length === 0 ? (
        <p className="muted">No image yet: novacron image import NAME --manifest FILE.</p>
      ) : null}
      <ErrorNote message={error ?? images.error} />
    </details>
  );
}
