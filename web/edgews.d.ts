// Types for edgews.js, the client of the edgews room server (wire protocol v1).
// See docs/client.md for usage and docs/protocol.md for the messages.

/** The subprotocol of wire protocol v1. */
export const PROTOCOL: "edgews.v1";

/** Connection states. */
export const State: {
  readonly IDLE: "idle";
  readonly CONNECTING: "connecting";
  readonly OPEN: "open";
  readonly RECONNECTING: "reconnecting";
  readonly CLOSED: "closed";
};
export type ConnectionState = (typeof State)[keyof typeof State];

/** Any JSON value: what `data` of a message may be. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The stable error codes of the protocol, and the client's own. */
export type ErrorCode =
  | "bad_json" | "bad_request" | "unknown_type" | "unauthorized" | "token_expired"
  | "forbidden" | "not_in_room" | "room_full" | "too_many_rooms" | "wrong_password"
  | "user_offline" | "rate_limited" | "internal"
  // client side
  | "timeout" | "disconnected" | "closed" | "queue_full" | "token" | "connect"
  | (string & {});

export type Presence = "online" | "away" | "busy" | "offline";

export interface User { id: string; name: string }
export interface Member extends User { status: Presence }

export interface Welcome {
  type: "welcome";
  conn_id: number | string;
  user: User;
  server_time: number;
  expires_at: number | null;
  limits: Record<string, Json>;
}

export interface Ack {
  type: "ack";
  /** The request's id; null for a `leave` settled locally while reconnecting. */
  id: number | null;
  /** True when the client settled the request itself (see `leave`). */
  local?: true;
  [field: string]: unknown;
}
export interface JoinAck extends Ack { room: string; members: number; recovered?: boolean; reason?: string }
export interface WhoAck extends Ack { room: string; count: number; members: Member[]; next: string | number | null }

export interface ErrorReply { type: "error"; id?: number; code: ErrorCode; message: string }

export interface RoomMessage {
  type: "message"; room: string; from: User; data: Json; ts: number;
  /** With history (a later server version): position in the room, and the room's epoch. */
  offset?: number; epoch?: string | number;
}
export interface PrivateMessage { type: "private"; from: User; data: Json; ts: number }
export interface PresenceEvent { type: "presence"; room: string; user: User; status: Presence }
export interface MembershipEvent { type: "user_joined" | "user_left"; room: string; user: User; members: number }
export interface TypingEvent { type: "typing"; room: string; user: User }
export interface DrainEvent { type: "drain"; reconnect_after_ms?: number }

/** After a reconnect, one per room the client was in. */
export interface RejoinEvent {
  room: string;
  /** True only when the server's ack said `recovered: true`. */
  recovered: boolean;
  /** The server's reason when not recovered (`epoch_changed`, `too_old`, ...), or the error code. */
  reason: string | null;
  ack?: JoinAck;
  error?: EdgewsError;
}

export interface CloseEvent {
  code: number;
  reason: string;
  /** Whether the client will reconnect on its own. */
  reconnecting: boolean;
  /** The delay before the next attempt, when reconnecting. */
  delayMs?: number;
  /** True when {@link EdgewsClient.close} was called. */
  byClient: boolean;
  /** True when this ends an open connection, false when a connection attempt failed. */
  wasOpen: boolean;
}

export interface EventMap {
  state: ConnectionState;
  welcome: Welcome;
  message: RoomMessage;
  private: PrivateMessage;
  presence: PresenceEvent;
  user_joined: MembershipEvent;
  user_left: MembershipEvent;
  typing: TypingEvent;
  drain: DrainEvent;
  rejoin: RejoinEvent;
  error: EdgewsError;
  close: CloseEvent;
  /** Every server message, including types this version does not know. */
  event: { type: string; [field: string]: unknown };
}

export interface ClientOptions {
  /** A token, or a function that returns one (called on every connect and before expiry). Required. */
  token: string | (() => string | Promise<string>);
  /** First reconnect delay in ms (default 500). */
  initialDelayMs?: number;
  /** Largest reconnect delay in ms (default 30000). */
  maxDelayMs?: number;
  /** Backoff multiplier per failed attempt (default 2). */
  factor?: number;
  /** Fraction of the delay taken off at random (default 0.5). */
  jitter?: number;
  /** How long a sent request waits for its reply (default 10000). */
  requestTimeoutMs?: number;
  /** How long a connection attempt waits for `welcome` (default 10000). */
  connectTimeoutMs?: number;
  /** Silence after which the client pings (default 25000; 0 turns liveness checks off). */
  pingIntervalMs?: number;
  /** How long a ping waits for any reply before the connection counts as dead (default 10000). */
  pingTimeoutMs?: number;
  /** Requests held while disconnected (default 1000). */
  maxQueue?: number;
  /** Refresh the token this long before it expires, when `token` is a function (default 30000). */
  refreshBeforeMs?: number;
  /** Resend requests that were on the wire when the connection dropped (at-least-once; default true). */
  resendUnacked?: boolean;
  /** A WebSocket implementation (default: globalThis.WebSocket). */
  WebSocket?: typeof WebSocket;
}

export class EdgewsError extends Error {
  readonly code: ErrorCode;
  /** The server's `error` reply, when the server refused. */
  readonly reply: ErrorReply | null;
}

export class EdgewsClient {
  constructor(url: string, options: ClientOptions);
  readonly url: string;
  readonly state: ConnectionState;
  readonly welcome: Welcome | null;

  on<K extends keyof EventMap>(event: K, fn: (payload: EventMap[K]) => void): () => void;
  off<K extends keyof EventMap>(event: K, fn: (payload: EventMap[K]) => void): void;

  connect(): Promise<Welcome>;
  close(code?: number, reason?: string): void;
  simulateDisconnect(): void;

  request(type: string, fields?: Record<string, Json>): Promise<Ack>;
  join(room: string, options?: { password?: string }): Promise<JoinAck>;
  leave(room: string): Promise<Ack>;
  rooms(): string[];
  send(room: string, data: Json, options?: { excludeSelf?: boolean }): Promise<Ack>;
  sendPrivate(to: string, data: Json): Promise<Ack>;
  setPresence(status: Presence): Promise<Ack>;
  who(room: string, options?: { cursor?: string | number; limit?: number }): Promise<WhoAck>;
  typing(room: string): boolean;
  ping(): Promise<{ type: "pong"; id: number; ts: number }>;
  refresh(token: string): Promise<Ack>;
}
