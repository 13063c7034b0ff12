// Module hooks for a child process (registered with module.register): resolving a framework
// or an optional peer dependency throws, so any import chain that reaches one fails loudly.
const refused = ["express", "fastify", "fastify-plugin", "hono", "@hono/node-server", "ioredis"];

export async function resolve(specifier, context, nextResolve) {
  const name = refused.find((peer) => specifier === peer || specifier.startsWith(`${peer}/`));
  if (name !== undefined) throw new Error(`${name} was imported (${specifier}) by ${context.parentURL}`);
  return nextResolve(specifier, context);
}
