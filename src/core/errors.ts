// Typed errors. Each carries the HTTP status the Engine API answers with, so
// api/ can map any error without knowing where it came from.

export class VxError extends Error {
  readonly status: number;
  constructor(message: string, status: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.status = status;
  }
}

/** Bad input from the caller: nothing was changed. */
export class InvalidArgumentError extends VxError {
  constructor(message: string) {
    super(message, 400);
  }
}

export class NotFoundError extends VxError {
  constructor(message: string) {
    super(message, 404);
  }
}

/** The request clashes with existing state (duplicate, in use). */
export class ConflictError extends VxError {
  constructor(message: string) {
    super(message, 409);
  }
}

/** The kernel refused an operation; says which object and why. */
export class KernelError extends VxError {
  readonly op: string;
  readonly object: string;
  readonly errno: number;
  readonly code: string;
  readonly detail: string | undefined;
  constructor(op: string, object: string, errno: number, code: string, detail?: string) {
    super(`${op} ${object}: ${code}${detail ? ` (${detail})` : ''}`, 500);
    this.detail = detail;
    this.op = op;
    this.object = object;
    this.errno = errno;
    this.code = code;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
