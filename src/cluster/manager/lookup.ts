// Docker's lookup of a swarm object by reference: full ID, then name, then a unique ID prefix.
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';

export function findByRef<T extends { id: string }>(all: T[], ref: string, nameOf: (x: T) => string, kind: string): T {
  const hit = all.find((x) => x.id === ref) ?? all.find((x) => nameOf(x) === ref);
  if (hit) return hit;
  const byPrefix = ref ? all.filter((x) => x.id.startsWith(ref)) : [];
  if (byPrefix.length === 1) return byPrefix[0]!;
  if (byPrefix.length > 1) throw new InvalidArgumentError(`${kind} ${ref} is ambiguous (${byPrefix.length} matches found)`);
  throw new NotFoundError(`${kind} ${ref} not found`);
}
