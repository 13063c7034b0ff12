// Module hooks for a child process (registered with module.register): resolving node-redis
// ("redis" or one of its "@redis/…" packages) throws, so any import chain that reaches it fails loudly.
export async function resolve(specifier, context, nextResolve) {
  if (specifier === "redis" || specifier.startsWith("redis/") || specifier.startsWith("@redis/")) {
    throw new Error(`node-redis was imported (${specifier}) by ${context.parentURL}`);
  }
  return nextResolve(specifier, context);
}
