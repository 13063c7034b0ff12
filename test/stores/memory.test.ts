import { MemoryStore } from "../../src/stores/memory.js";
import { describeSessionConformance } from "../conformance/session-conformance.js";
import { describeStoreConformance } from "../conformance/store-conformance.js";

describeStoreConformance("memory", async () => {
  const store = new MemoryStore();
  return {
    store,
    async backendExpiryMs(key) {
      // The memory store's only expiry is the record's own deadline; now = 0 reads past it.
      const record = await store.load(key, { now: 0, idleTimeoutMs: 1, touchIntervalMs: Number.MAX_SAFE_INTEGER });
      return record === undefined ? undefined : record.meta.expiresAt - Date.now();
    },
    async holdsAnything(key) {
      return (await store.load(key, { now: 0, idleTimeoutMs: 1, touchIntervalMs: Number.MAX_SAFE_INTEGER })) !== undefined;
    },
    close: () => store.dispose(),
  };
});

describeSessionConformance("memory", async () => {
  const store = new MemoryStore();
  return { store, close: () => store.dispose() };
});
