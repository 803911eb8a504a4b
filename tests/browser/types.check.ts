// Compiled (never run) by run.sh with `tsc --noEmit --strict`: uses every
// part of web/edgews.d.ts the way docs/client.md shows, so a declaration
// that drifts from the documented API fails the build.
import { EdgewsClient, EdgewsError, PROTOCOL, State } from "../../web/edgews.js";
import type { ConnectionState, JoinAck, Welcome, WhoAck } from "../../web/edgews.js";

const client = new EdgewsClient("ws://127.0.0.1:8080/ws", {
  token: async () => "jwt",
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  pingIntervalMs: 0,
});
const stop: () => void = client.on("message", (m) => console.log(m.room, m.from.name, m.data, m.offset));
client.on("private", (m) => console.log(m.from.id, m.data, m.ts));
client.on("user_joined", (e) => console.log(e.user.name, e.members));
client.on("presence", (e) => console.log(e.status === "away"));
client.on("typing", (e) => console.log(e.room, e.user.id));
client.on("rejoin", (e) => console.log(e.room, e.recovered, e.reason, e.ack?.members));
client.on("drain", (e) => console.log(e.reconnect_after_ms));
client.on("close", (e) => console.log(e.code, e.reconnecting, e.delayMs, e.wasOpen));
client.on("error", (e: EdgewsError) => console.log(e.code, e.reply?.message));
client.on("state", (s: ConnectionState) => console.log(s === State.OPEN));
stop();

async function demo(): Promise<void> {
  const welcome: Welcome = await client.connect();
  const ack: JoinAck = await client.join("lobby", { password: "pw" });
  const page: WhoAck = await client.who("lobby", { cursor: "c", limit: 10 });
  const statuses: string[] = page.members.map((m) => m.status);
  await client.send("lobby", { text: "hi", n: [1, 2, null] }, { excludeSelf: true });
  await client.sendPrivate("bob", "psst");
  await client.setPresence("busy");
  const pong = await client.ping();
  const sent: boolean = client.typing("lobby");
  const rooms: string[] = client.rooms();
  console.log(PROTOCOL, welcome.user.id, ack.members, statuses, pong.ts, sent, rooms);
  await client.request("leave", { room: "lobby" });
  client.close(1000, "bye");
}
void demo();
