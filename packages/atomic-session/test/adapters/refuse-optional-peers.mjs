// Module hooks for a child process (registered with module.register, with the list of packages
// to refuse as data): resolving one of them throws, so any import chain that reaches one fails loudly.
let refused = [];

export function initialize(data) {
  refused = data.refused;
}

export async function resolve(specifier, context, nextResolve) {
  const name = refused.find((peer) => specifier === peer || specifier.startsWith(peer.endsWith("/") ? peer : `${peer}/`));
  if (name !== undefined) throw new Error(`${name} was imported (${specifier}) by ${context.parentURL}`);
  return nextResolve(specifier, context);
}
